"""SpikingJelly 2.0.0 half of ``bench_neurons.py`` (PyTorch, CUDA): LIFNode and FlexSN(LIF core).

LIFNode(step_mode='m') with a float32 CUDA input takes SpikingJelly's auto-selected fused path
(Triton when its CUDA extension is not built, as in the published wheel). FlexSN compiles one
Triton kernel per sequence length, so it is measured at T=4 and T=16 only, with the first-call
(compile) time recorded.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


BATCH = 10  # calls per timed sample, back-to-back (as in bench_neurons.py)


def cuda_time(fn, reps: int) -> float:
    """Median milliseconds per call of ``fn()``: CUDA events around ``BATCH`` back-to-back calls,
    ``reps`` samples, after five warm-ups."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(BATCH):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / BATCH)
    return float(np.median(times))


def per_call_time(fn, reps: int) -> float:
    """Median milliseconds of one synchronised call (host clock, dispatch included)."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def bench(module_factory, name: str, impl: str, T: int, N: int, reps: int) -> dict:
    from spikingjelly.activation_based import functional
    torch.manual_seed(T * 7919 + N)
    x = (torch.randn(T, N, device="cuda") * 0.6 + 0.5).requires_grad_(True)
    g = torch.randn(T, N, device="cuda")
    m = module_factory()

    def fwd():
        with torch.no_grad():
            functional.reset_net(m)
            return m(x)

    def fwd_bwd():
        functional.reset_net(m)
        out = m(x)
        (gx,) = torch.autograd.grad((out * g).sum(), x)
        return gx

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fwd_bwd()
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    return {"impl": impl, "neuron": name, "T": T, "N": N, "dtype": "float32",
            "fwd_ms": cuda_time(fwd, reps), "fwd_bwd_ms": cuda_time(fwd_bwd, reps),
            "fwd_ms_call": per_call_time(fwd, reps), "fwd_bwd_ms_call": per_call_time(fwd_bwd, reps),
            "first_call_s": first}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="sj_results.json")
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    import spikingjelly
    from spikingjelly.activation_based import neuron, surrogate
    from spikingjelly.activation_based.functional import neuron_implementation

    impl_info = neuron_implementation("lif", torch.device("cuda"))
    print("SpikingJelly", spikingjelly.__version__ if hasattr(spikingjelly, "__version__") else "",
          "torch", torch.__version__, "LIF implementation:", impl_info, flush=True)

    Ts = [4, 16, 64]
    Ns = [32768, 262144, 2097152, 8388608]
    if args.quick:
        Ts, Ns = [16], [32768, 8388608]
    rows = []

    def save():  # after every row, so a time-out keeps what was measured
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "lif_impl": str(impl_info), "rows": rows}, f)

    for T in Ts:
        for N in Ns:
            r = bench(lambda: neuron.LIFNode(step_mode="m"), "LIF", "spikingjelly-LIFNode", T, N,
                      args.reps)
            rows.append(r)
            save()
            print(json.dumps(r), flush=True)

    def lif_core(x, v):
        h = v + (x - v) / 2.0
        s = surrogate.Sigmoid.spiking_function(h - 1.0, 4.0)
        return s, h * (1.0 - s)

    for T in ([16] if args.quick else [4, 16]):
        for N in ([32768, 8388608] if args.quick else [32768, 2097152, 8388608]):
            try:
                r = bench(lambda: neuron.FlexSN(lif_core, num_states=1), "LIF",
                          "spikingjelly-FlexSN", T, N, args.reps)
            except Exception as e:  # report, keep the other rows
                print(f"FlexSN T={T} N={N} failed: {type(e).__name__}: {e}", flush=True)
                continue
            rows.append(r)
            save()
            print(json.dumps(r), flush=True)
    save()


if __name__ == "__main__":
    main()
