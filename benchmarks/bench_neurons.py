"""Multi-step neuron benchmark: snnjax kernel path vs snnjax lax.scan vs SpikingJelly 2.0.0.

Run on the GPU machine (one H200):

    python benchmarks/bench_neurons.py --out results.json            # everything
    python benchmarks/bench_neurons.py --quick                       # a small subset
    python benchmarks/bench_neurons.py --quick --backends pallas,mosaic,scan --no-spikingjelly

The SpikingJelly half runs in a subprocess (``bench_spikingjelly.py``) so that PyTorch and JAX do
not compete for GPU memory. Timings: warm-up, ``block_until_ready`` / CUDA synchronisation,
median over ``--reps`` (>= 20) samples, both of 10 back-to-back calls (GPU time, dispatch hidden)
and of single synchronised calls (dispatch included). Forward = inference (no residuals); forward+backward =
gradient of ``sum(spikes * g)`` w.r.t. the input. Bandwidth floor: fp32, forward 8 B per
neuron-step (read x, write spike), forward+backward 24 B (plus the state the forward must hand to
the backward), at the copy bandwidth measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from snnjax import neuron  # noqa: E402


BATCH = 10  # calls per timed sample: back-to-back, so Python dispatch overlaps the GPU work


def timeit(fn, *args, reps: int) -> float:
    """Median time (ms) per call of ``fn(*args)``: ``reps`` samples of ``BATCH`` back-to-back
    calls each, synchronised on the last result, after warm-up."""
    for _ in range(5):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(BATCH):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) * 1e3 / BATCH)
    return float(np.median(times))


def timeit_per_call(fn, *args, reps: int) -> float:
    """Median time (ms) of one synchronised call (``fn(*args)`` then ``block_until_ready``):
    host dispatch included, as a loop that waits for every result sees it."""
    for _ in range(5):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def copy_bandwidth(reps: int) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (1 << 29,), jnp.float32)   # 2 GiB
    f = jax.jit(lambda a: a * 1.5)
    ms = timeit(f, a, reps=reps)
    return 2 * a.size * 4 / (ms * 1e-3)


def make_neuron(name: str, backend: str):
    if name == "LIF":
        return neuron.LIFNode(step_mode="m", backend=backend)
    if name == "IF":
        return neuron.IFNode(step_mode="m", backend=backend)
    if name == "PLIF":
        return neuron.ParametricLIFNode(step_mode="m", backend=backend)
    if name == "Izhikevich":
        return neuron.IzhikevichNode(step_mode="m", backend=backend)
    if name == "CUBALIF":
        return neuron.CUBALIFNode(step_mode="m", backend=backend)
    raise ValueError(name)


def bench_jax(name: str, backend: str, T: int, N: int, reps: int, dtype=jnp.float32) -> dict:
    m = make_neuron(name, backend)
    key = jax.random.PRNGKey(T * 7919 + N)
    x = (jax.random.normal(key, (T, N), jnp.float32) * 0.6 + 0.5).astype(dtype)
    g = jax.random.normal(jax.random.fold_in(key, 1), (T, N), jnp.float32).astype(dtype)
    s0 = m.init_state(x[0])
    # As in a model: fixed hyperparameters are the module's Python numbers (compile-time
    # constants); learnable ones are arguments. Gradient w.r.t. the input (as SpikingJelly's
    # measurement); PLIF also w.r.t. its learnable w.
    learn = {k: jnp.asarray(v) for k, v in m.params().items() if name == "PLIF" and k == "w"}
    # every array is an argument: closed-over arrays would be baked into the program as constants
    fwd = jax.jit(lambda x, s0: m.multi_step(s0, x)[1])

    def loss(x, learn, s0, g):
        out = m.multi_step(s0, x, learn)[1]
        return jnp.sum(out.astype(jnp.float32) * g.astype(jnp.float32))

    fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1)))
    t0 = time.perf_counter()
    jax.block_until_ready(fwd_bwd(x, learn, s0, g))
    compile_s = time.perf_counter() - t0
    return {"impl": f"snnjax-{backend}", "neuron": name, "T": T, "N": N,
            "dtype": jnp.dtype(dtype).name, "fwd_ms": timeit(fwd, x, s0, reps=reps),
            "fwd_bwd_ms": timeit(fwd_bwd, x, learn, s0, g, reps=reps),
            "fwd_ms_call": timeit_per_call(fwd, x, s0, reps=reps),
            "fwd_bwd_ms_call": timeit_per_call(fwd_bwd, x, learn, s0, g, reps=reps),
            "first_call_s": compile_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_results.json")
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-spikingjelly", action="store_true")
    ap.add_argument("--sj-timeout", type=float, default=300.0, help="seconds for the torch half")
    ap.add_argument("--backends", default="pallas,mosaic,scan",
                    help="snnjax backends to time, comma-separated (kernel ones also for the "
                         "other neurons and bf16)")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    kernel_backends = [b for b in backends if b != "scan"]

    Ts = [4, 16, 64]
    Ns = [32768, 262144, 2097152, 8388608]
    extra = []
    if args.quick:   # plus T=64 (first-call time of a long sequence), kernels only
        Ts, Ns = [16], [32768, 8388608]
        extra = [(64, 2097152)]
    results = {"device": str(jax.devices()[0]), "jax": jax.__version__, "rows": []}
    bw = copy_bandwidth(args.reps)
    results["copy_bandwidth_Bps"] = bw
    print(f"device {results['device']}, jax {jax.__version__}, copy bandwidth {bw / 1e12:.2f} TB/s",
          flush=True)

    rows = results["rows"]
    jax.block_until_ready(jax.jit(lambda a: a * 2)(jnp.ones((1 << 28,))))   # wake the clocks
    for T in Ts:
        for N in Ns:
            if T * N > 64 * 8388608:
                continue
            for backend in backends:
                r = bench_jax("LIF", backend, T, N, args.reps)
                rows.append(r)
                print(json.dumps(r), flush=True)
    for T, N in extra:
        for backend in kernel_backends:
            r = bench_jax("LIF", backend, T, N, args.reps)
            rows.append(r)
            print(json.dumps(r), flush=True)
    # other neurons at the headline size, kernel path only
    T, N = 16, 8388608
    for name in ("IF", "PLIF", "Izhikevich", "CUBALIF"):
        if not hasattr(neuron, {"IF": "IFNode", "PLIF": "ParametricLIFNode",
                                "Izhikevich": "IzhikevichNode", "CUBALIF": "CUBALIFNode"}[name]):
            continue
        for backend in kernel_backends:
            r = bench_jax(name, backend, T, N, args.reps)
            rows.append(r)
            print(json.dumps(r), flush=True)
    for dtype in (jnp.bfloat16,):
        for backend in kernel_backends:
            r = bench_jax("LIF", backend, T, N, args.reps, dtype=dtype)
            rows.append(r)
            print(json.dumps(r), flush=True)

    if not args.no_spikingjelly:
        cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "bench_spikingjelly.py"),
               "--reps", str(args.reps), "--out", args.out + ".sj.json"]
        if args.quick:
            cmd.append("--quick")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.sj_timeout)
            print(proc.stdout[-4000:], proc.stderr[-4000:], flush=True)
        except subprocess.TimeoutExpired as e:
            print(f"SpikingJelly half stopped after {args.sj_timeout} s; keeping its rows so far",
                  (e.stdout or b"")[-4000:], flush=True)
        if os.path.exists(args.out + ".sj.json"):
            with open(args.out + ".sj.json") as f:
                sj = json.load(f)
            rows.extend(sj["rows"])
            results["torch"] = sj.get("torch")

    results["copy_bandwidth_end_Bps"] = copy_bandwidth(args.reps)
    print(f"copy bandwidth at the end {results['copy_bandwidth_end_Bps'] / 1e12:.2f} TB/s")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(render_table(results))


def render_table(results: dict) -> str:
    """Markdown table: ms (batched and per synchronised call), ratio to the bandwidth floor,
    speed-up over SpikingJelly's LIFNode under the same timing."""
    bw = results["copy_bandwidth_Bps"]
    rows = results["rows"]
    sj = {(r["T"], r["N"], r["neuron"]): r for r in rows if r["impl"] == "spikingjelly-LIFNode"}
    lines = ["| impl | neuron | dtype | T | N | fwd ms | fwd/floor | fwd+bwd ms | fwd+bwd/floor "
             "| SJ LIFNode fwd+bwd / this | per call: fwd ms | per call: fwd+bwd ms "
             "| per call: SJ / this | first call s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f3(v):
        return "-" if v is None else f"{v:.3f}"

    def ratio(ref, r, key):
        return f"{ref[key] / r[key]:.2f}x" if ref and r.get(key) and ref.get(key) else "-"
    for r in rows:
        esize = 2 if r.get("dtype") in ("bfloat16", "float16") else 4
        floor_f = 2 * esize * r["T"] * r["N"] / bw * 1e3
        floor_b = 6 * esize * r["T"] * r["N"] / bw * 1e3
        ref = sj.get((r["T"], r["N"], "LIF"))
        fb = r.get("fwd_bwd_ms")
        lines.append(
            f"| {r['impl']} | {r['neuron']} | {r.get('dtype', 'float32')} | {r['T']} | {r['N']} | "
            f"{r['fwd_ms']:.3f} | {r['fwd_ms'] / floor_f:.2f} | {f3(fb)} | "
            f"{'-' if fb is None else f'{fb / floor_b:.2f}'} | {ratio(ref, r, 'fwd_bwd_ms')} | "
            f"{f3(r.get('fwd_ms_call'))} | {f3(r.get('fwd_bwd_ms_call'))} | "
            f"{ratio(ref, r, 'fwd_bwd_ms_call')} | {r.get('first_call_s', float('nan')):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
