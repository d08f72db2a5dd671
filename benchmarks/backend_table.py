"""Which kernel backend runs each neuron (and each surrogate's primitive) under
``backend='mosaic'`` on this machine's JAX: ``mosaic``, ``pallas`` (the Triton fallback, with the
primitive Mosaic lacks) or ``scan``. Prints the markdown table of ``docs/backends.md``.

    python benchmarks/backend_table.py
    python benchmarks/backend_table.py --time [--chunks default,4] [--N 8388608] [--json t.json]

``--time`` (on the GPU) also times every elementwise neuron's jitted forward+backward (gradient
of ``sum(out * g)`` w.r.t. the input, fixed hyperparameters as compile-time constants, as
``bench_neurons.py``) and its first call on the Triton and the Mosaic kernels in one run, the
measurement behind ``'auto'``'s choice (``kernels.auto_kernel_backend``).
"""
from __future__ import annotations

import inspect
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))
from snnjax import kernels, neuron, surrogate  # noqa: E402
from snnjax.kernels import Config, KernelLoweringError  # noqa: E402


def which(step, state0, xs, params) -> str:
    for name, backend in (("mosaic", "mosaic"), ("pallas", "triton")):
        try:
            kernels.check_step(step, state0, xs, params, Config(backend=backend, interpret=False))
            return name
        except KernelLoweringError as e:
            if name == "mosaic":
                reason = str(e).split("'")[1] if "'" in str(e) else str(e)[:60]
    return f"scan ({reason})"


def time_backends(T: int, N: int, reps: int, out: str | None, chunks: list[int | None]) -> None:
    """Triton vs Mosaic forward+backward of every elementwise neuron (markdown table), at each
    ``chunk`` of ``chunks`` (``None``: the backend's default)."""
    import json
    import time

    import registry
    import test_kernel_all_neurons as kan
    from bench_neurons import copy_bandwidth, timeit
    bw = copy_bandwidth(reps)
    variants = [(b, c) for b in ("pallas", "mosaic") for c in chunks]
    names = [f"{'Triton' if b == 'pallas' else 'Mosaic'} chunk {c or 'default'}"
             for b, c in variants]
    print(f"{jax.devices()[0]}, JAX {jax.__version__}, copy {bw / 1e12:.2f} TB/s, T={T}, N={N}; "
          "forward+backward ms (first call s)\n")
    print("| neuron | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    rows = []
    for name in kan.ELEMENTWISE:
        m = kan.build(name, "scan")
        step_shape = registry.entry(name).step_shape
        k = step_shape[-1]   # a population class (non-default step shape) fixes its last axis
        shape = (T, N) if step_shape == registry.Entry.step_shape else (T, N // k, k)
        key = jax.random.PRNGKey(len(name))
        x = jax.random.normal(key, shape, jnp.float32) * 0.6 + 0.5
        g = jax.random.normal(jax.random.fold_in(key, 1), shape, jnp.float32)
        row: dict = {"neuron": name, "T": T, "shape": list(shape), "variants": []}
        cells = []
        for backend, chunk in variants:
            m.backend = backend
            s0 = m.init_state(x[0])

            def loss(x, s0, g, m=m):
                out = m.multi_step(s0, x)[1]
                return sum(jnp.sum(o.astype(jnp.float32) * g)
                           for o in jax.tree_util.tree_leaves(out))
            with kernels.default_config(**({} if chunk is None else {"chunk": chunk})):
                fb = jax.jit(jax.grad(loss))
                t0 = time.perf_counter()
                jax.block_until_ready(fb(x, s0, g))
                first = time.perf_counter() - t0
                ms = timeit(fb, x, s0, g, reps=reps)
            row["variants"].append({"backend": backend, "chunk": chunk, "fwd_bwd_ms": ms,
                                    "first_call_s": first})
            cells.append(f"{ms:.3f} ({first:.2f})")
        rows.append(row)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if out:
        with open(out, "w") as f:
            json.dump({"device": str(jax.devices()[0]), "jax": jax.__version__,
                       "copy_bandwidth_Bps": bw, "rows": rows}, f, indent=1)


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--N", type=int, default=8388608)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", default=None)
    ap.add_argument("--chunks", default="default",
                    help="comma-separated chunk lengths to time ('default': the backend's)")
    a = ap.parse_args()
    if a.time:
        chunks = [None if c == "default" else int(c) for c in a.chunks.split(",")]
        time_backends(a.T, a.N, a.reps, a.json, chunks)
        return
    import test_kernel_all_neurons as kan
    x = jnp.ones((3, 256), jnp.float32)
    print(f"JAX {jax.__version__}\n\n| neuron | backend='mosaic' runs |\n|---|---|")
    for name in kan.ELEMENTWISE:
        m = kan.build(name, "scan")
        r = which(m.bound_step(), m.init_state(x[0]), x, m.params())
        if r == "pallas":
            try:
                kernels.check_step(m.bound_step(), m.init_state(x[0]), x, m.params(),
                                   Config(backend="mosaic", interpret=False))
            except KernelLoweringError as e:
                r = f"pallas ({str(e).split(chr(39))[1]})"
        print(f"| {name} | {r} |")
    for name in kan.NOT_ELEMENTWISE:
        print(f"| {name} | scan ({kan.NOT_ELEMENTWISE[name]}) |")
    print("\n| surrogate (LIFNode, spiking=True / False) | backend='mosaic' runs |\n|---|---|")
    for n in sorted(dir(surrogate)):
        cls = getattr(surrogate, n)
        if not (inspect.isclass(cls) and issubclass(cls, surrogate.SurrogateFunction)) \
                or cls is surrogate.SurrogateFunction:
            continue
        res = []
        for spiking in (True, False):
            try:
                m = neuron.LIFNode(surrogate_function=cls(spiking=spiking), step_mode="m")
                step = m.bound_step()
                res.append(which(step, m.init_state(x[0]), x, m.params()))
            except Exception as e:  # constructor needs arguments, or no primitive
                res.append(f"- ({type(e).__name__})")
        print(f"| {n} | {res[0]} / {res[1]} |")


if __name__ == "__main__":
    main()
