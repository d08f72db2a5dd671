"""Quick GPU timing of the generated kernels against ``lax.scan`` (LIF, fp32).

    PYTHONPATH=. python benchmarks/bench_kernels_quick.py [--T 16] [--N 8388608] [--sweep]

Prints ms for the inference forward and for forward+backward (``jax.vjp`` with the output
cotangent only), the bytes-per-neuron-step floor at a measured copy bandwidth, and the compile
time of the kernels at T=64. Times: back-to-back asynchronous calls, median of several trials.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.kernels import Config, multi_step, on_gpu


@jax.custom_vjp
def spike(x):
    return (x >= 0).astype(x.dtype)


def _spike_fwd(x):
    return spike(x), x


def _spike_bwd(x, g):
    s = jax.nn.sigmoid(4.0 * x)
    return (g * 4.0 * s * (1.0 - s),)


spike.defvjp(_spike_fwd, _spike_bwd)


def lif(state, x, params):
    """SpikingJelly LIFNode default: decay_input, hard reset to 0, sigmoid surrogate."""
    v = state["v"]
    h = v + (x - (v - params["v_reset"])) / params["tau"]
    s = spike(h - params["v_th"])
    return {"v": h * (1.0 - s) + params["v_reset"] * s}, s


PARAMS = {"tau": 2.0, "v_th": 1.0, "v_reset": 0.0}


def bench(fn, *args, iters=30, trials=5) -> float:
    """Median over trials of (time of ``iters`` back-to-back calls) / iters, in ms."""
    jax.block_until_ready(fn(*args))
    res = []
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = fn(*args)
        jax.block_until_ready(out)
        res.append((time.perf_counter() - t0) / iters * 1e3)
    return statistics.median(res)


def make_fns(backend: str, cfg: Config | None, scalar_v0: bool = False):
    """jitted (inference forward, forward+backward); ``scalar_v0``: state0 ``{"v": 0.0}``
    (one shared row) instead of a zeros ``[N]`` array."""
    def v0(x):
        return {"v": 0.0} if scalar_v0 else {"v": jnp.zeros(x.shape[1:], x.dtype)}

    def fwd(xs):
        st, s = multi_step(lif, v0(xs), xs, PARAMS, backend=backend, config=cfg)
        return s, st["v"]

    def fwd_bwd(xs, g):
        def f(x):
            return multi_step(lif, v0(x), x, PARAMS, backend=backend, config=cfg)[1]
        out, vjp = jax.vjp(f, xs)
        return out, vjp(g)[0]
    return jax.jit(fwd), jax.jit(fwd_bwd)


def copy_bandwidth(n_bytes: int) -> float:
    a = jnp.ones((n_bytes // 4,), jnp.float32)
    f = jax.jit(lambda a: a * 1.0000001)
    ms = bench(f, a)
    return 2 * n_bytes / (ms * 1e-3) / 1e12  # TB/s, read + write


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--N", type=int, default=8 * 1024 * 1024)
    ap.add_argument("--sweep", action="store_true")
    a = ap.parse_args()
    T, N = a.T, a.N
    print("devices:", jax.devices(), "jax", jax.__version__)
    kx, kg = jax.random.split(jax.random.key(0))
    xs = jax.random.normal(kx, (T, N), jnp.float32) * 1.5 + 0.5
    g = jax.random.normal(kg, (T, N), jnp.float32)
    bw = copy_bandwidth(T * N * 4)
    floor_f = 8 * T * N / (bw * 1e12) * 1e3
    floor_fb = 24 * T * N / (bw * 1e12) * 1e3
    print(f"copy bandwidth {bw:.2f} TB/s; floors: fwd {floor_f:.3f} ms (8 B), "
          f"fwd+bwd {floor_fb:.3f} ms (24 B per neuron-step)")

    # correctness at full size against scan
    sf, sfb = make_fns("scan", None)
    pf, pfb = make_fns("pallas", Config(interpret=not on_gpu()))
    o_s, o_p = sfb(xs, g), pfb(xs, g)
    for u, w, name in zip(jax.tree_util.tree_leaves(o_p), jax.tree_util.tree_leaves(o_s),
                          ["spikes", "grad_x"]):
        err = float(jnp.max(jnp.abs(u - w)))
        print(f"check {name}: max |pallas - scan| = {err:.3g}")

    rows = [("scan", None, bench(sf, xs), bench(sfb, xs, g))]
    rows.append(("pallas default", None, bench(pf, xs), bench(pfb, xs, g)))
    pf0, pfb0 = make_fns("pallas", Config(interpret=not on_gpu()), scalar_v0=True)
    rows.append(("pallas, scalar v0", None, bench(pf0, xs), bench(pfb0, xs, g)))
    if a.sweep:
        # an earlier, wider sweep (block 256-2048 x warps 2-8 x stages x prefetch) on the H200
        # found all within +-3% of each other: keep a few
        configs = [(256, 2, None, True), (512, 4, None, True), (512, 4, 1, True),
                   (1024, 4, None, True), (1024, 4, None, False)]
        for b, w, st, pf in configs:
            name = f"b={b} w={w} st={st} pf={int(pf)}"
            try:
                f, fb = make_fns("pallas", Config(block_n=b, num_warps=w, num_stages=st,
                                                  prefetch=pf))
                rows.append((name, None, bench(f, xs, iters=20, trials=3),
                             bench(fb, xs, g, iters=20, trials=3)))
            except Exception as e:  # keep sweeping
                print(f"{name}: {type(e).__name__}: {str(e)[:200]}")

    # compile time at T=64 (fresh step function so nothing is cached)
    def lif2(state, x, params):
        return lif(state, x, params)
    x64 = jnp.ones((64, 1 << 20), jnp.float32)
    t0 = time.perf_counter()

    def f64(x):
        def f(x):
            return multi_step(lif2, {"v": jnp.zeros(x.shape[1:])}, x, PARAMS,
                              backend="pallas")[1]
        out, vjp = jax.vjp(f, x)
        return out, vjp(out)[0]
    jax.jit(f64).lower(x64).compile()
    t_compile = time.perf_counter() - t0

    print(f"\nLIF fp32 T={T} N={N}")
    print(f"{'variant':24s} {'fwd ms':>8s} {'x floor':>8s} {'fwd+bwd ms':>11s} {'x floor':>8s}")
    for name, _, tf, tfb in rows:
        print(f"{name:24s} {tf:8.3f} {tf / floor_f:8.2f} {tfb:11.3f} {tfb / floor_fb:8.2f}")
    best_f = min(rows[1:], key=lambda r: r[2])
    best_fb = min(rows[1:], key=lambda r: r[3])
    print(f"best fwd: {best_f[0]} {best_f[2]:.3f} ms; best fwd+bwd: {best_fb[0]} "
          f"{best_fb[3]:.3f} ms")
    print(f"compile (trace+lower+compile, fwd+bwd, T=64): {t_compile:.2f} s")


if __name__ == "__main__":
    main()
