"""Kernel-configuration sweep on the GPU (snnjax only): which ``kernels.Config`` is fastest.

    python3 benchmarks/sweep_kernels.py --out sweep.json [--T 16] [--N 8388608] [--quick]
    python3 benchmarks/sweep_kernels.py --backend mosaic --quick   # the Mosaic GPU kernels
    python3 benchmarks/sweep_kernels.py --dtype bfloat16 --grid 'recompute;4,8;256,512;4,8' --no-others

For LIF (and a few other neurons at the best LIF settings) it times the modules' jitted
inference forward and forward+backward (``jax.grad`` of ``sum(spikes * g)`` w.r.t. the input),
exactly as ``bench_neurons.py`` does, under ``kernels.default_config(...)`` for every point of
the grid residuals x chunk x block x warps. Every variant is first checked against the
``lax.scan`` path on the same data (spikes equal, gradient within float32 rounding).
Prints a table sorted by time and the best setting; writes all rows to ``--out``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from bench_neurons import copy_bandwidth, timeit  # noqa: E402
from snnjax import kernels, neuron  # noqa: E402

REPS = 7  # samples of bench_neurons.BATCH back-to-back calls per timing


NEURONS = {
    "LIF": lambda: neuron.LIFNode(step_mode="m", backend="pallas"),
    "IF": lambda: neuron.IFNode(step_mode="m", backend="pallas"),
    "PLIF": lambda: neuron.ParametricLIFNode(step_mode="m", backend="pallas"),
    "Izhikevich": lambda: neuron.IzhikevichNode(step_mode="m", backend="pallas"),
    "CUBALIF": lambda: neuron.CUBALIFNode(step_mode="m", backend="pallas"),
}


def functions(name: str, backend: str):
    m = NEURONS[name]()
    m.backend = backend
    learn = {k: jnp.asarray(v) for k, v in m.params().items() if name == "PLIF" and k == "w"}
    fwd = jax.jit(lambda x, s0: m.multi_step(s0, x)[1])

    def loss(x, learn, s0, g):
        out = m.multi_step(s0, x, learn)[1]
        return jnp.sum(out.astype(jnp.float32) * g.astype(jnp.float32))
    return m, learn, fwd, jax.jit(jax.grad(loss, argnums=(0, 1)))


BACKEND = "pallas"


def run_variant(name, x, g, overrides, ref=None):
    with kernels.default_config(**overrides):
        m, learn, fwd, fb = functions(name, BACKEND)
        s0 = m.init_state(x[0])
        t0 = time.perf_counter()
        out = jax.block_until_ready(fb(x, learn, s0, g))
        first = time.perf_counter() - t0
        spikes = fwd(x, s0)
        row = dict(neuron=name, dtype=x.dtype.name, **overrides, first_call_s=first)
        if ref is not None:
            row["spikes_differ"] = int(jnp.sum(spikes != ref[0]))
            row["grad_rel_err"] = float(jnp.linalg.norm((out[0] - ref[1][0]).astype(jnp.float32))
                                        / jnp.linalg.norm(ref[1][0].astype(jnp.float32)))
        row["fwd_ms"] = timeit(fwd, x, s0, reps=REPS)
        row["fwd_bwd_ms"] = timeit(fb, x, learn, s0, g, reps=REPS)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="sweep.json")
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--N", type=int, default=8388608)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--backend", default="pallas", choices=("pallas", "mosaic"))
    ap.add_argument("--sweep-neurons", default="LIF", help="comma-separated; the first sets "
                    "the configuration the other neurons are also timed at")
    ap.add_argument("--dtype", default="float32", help="input dtype of the swept neurons")
    ap.add_argument("--grid", default=None, help="explicit grid instead of the built-in one: "
                    "'residuals;chunks;blocks;warps', each comma-separated ('none' for None), "
                    "e.g. 'recompute;4,8;256,512;4,8'")
    ap.add_argument("--no-others", action="store_true",
                    help="skip timing every neuron at the defaults and the best setting")
    ap.add_argument("--out-each", default=None, help="also append each row to this file")
    a = ap.parse_args()
    global BACKEND
    BACKEND = a.backend
    T, N = a.T, a.N
    bw = copy_bandwidth(REPS)
    print(f"{jax.devices()[0]} jax {jax.__version__} copy {bw / 1e12:.2f} TB/s", flush=True)
    key = jax.random.PRNGKey(0)
    x = (jax.random.normal(key, (T, N), jnp.float32) * 0.6 + 0.5).astype(a.dtype)
    g = jax.random.normal(jax.random.fold_in(key, 1), (T, N), jnp.float32).astype(a.dtype)

    def reference(name, x, g):
        m, learn, fwd, fb = functions(name, "scan")
        s0 = m.init_state(x[0])
        return fwd(x, s0), fb(x, learn, s0, g)

    rows = []
    keys = ("residuals", "chunk", "block_n", "num_warps")
    if a.backend == "mosaic":   # one warpgroup per program: no warps; blocks >= 128
        grid = list(itertools.product(["save", "recompute"], [4, 8] if a.quick else [4, 8, 16],
                                      [256, 512, 1024, 2048], [None]))
    elif a.quick:
        grid = list(itertools.product(["save", "recompute"], [1, 8, 16], [256], [4]))
    else:
        grid = [g_ for g_ in itertools.product(["save", "recompute"], [1, 4, 8, 16],
                                               [128, 256, 512], [2, 4, 8])
                if g_[2] // (32 * g_[3]) in (1, 2, 4)]   # 1, 2 or 4 neurons per thread
    if a.grid:
        def parse(field, conv):
            return [None if v == "none" else conv(v) for v in field.split(",")]
        res, chunks, blocks, warps = a.grid.split(";")
        grid = list(itertools.product(parse(res, str), parse(chunks, int), parse(blocks, int),
                                      parse(warps, int)))
    best = {}
    for name in a.sweep_neurons.split(","):
        ref = reference(name, x, g)
        for residuals, chunk, block, warps in grid:
            ov = dict(residuals=residuals, chunk=chunk, block_n=block, num_warps=warps)
            try:
                r = run_variant(name, x, g, ov, ref)
            except Exception as e:  # keep sweeping
                print(f"{name} {ov}: {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            rows.append(r)
            print(json.dumps(r), flush=True)
            if a.out_each:
                with open(a.out_each, "a") as f:
                    f.write(json.dumps(r) + "\n")
        mine = [r for r in rows if r["neuron"] == name]
        best[name] = (min(mine, key=lambda r: r["fwd_ms"]), min(mine, key=lambda r: r["fwd_bwd_ms"]))
    if a.no_others:
        others_names: list = []
    else:
        others_names = list(NEURONS)
    best_f, best_b = best[a.sweep_neurons.split(",")[0]]
    # every neuron (and bf16 LIF) with the defaults and at the best LIF setting
    others = [dict(), {k: best_b[k] for k in keys}]
    for name in others_names:
        ref_n = reference(name, x, g)
        for ov in others:
            try:
                r = run_variant(name, x, g, ov, ref_n)
            except Exception as e:
                print(f"{name} {ov}: {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            rows.append(r)
            print(json.dumps(r), flush=True)
    xb, gb = x.astype(jnp.bfloat16), g.astype(jnp.bfloat16)
    ref_b = reference("LIF", xb, gb)
    for ov in (others if others_names else []):
        rows.append(run_variant("LIF", xb, gb, ov, ref_b))
        print(json.dumps(rows[-1]), flush=True)

    with open(a.out, "w") as f:
        json.dump({"device": str(jax.devices()[0]), "jax": jax.__version__, "T": T, "N": N,
                   "copy_bandwidth_Bps": bw, "rows": rows}, f, indent=1)
    floor_f, floor_b = 8 * T * N / bw * 1e3, 24 * T * N / bw * 1e3
    print(f"\nT={T} N={N}; floors fp32: fwd {floor_f:.3f} ms, fwd+bwd {floor_b:.3f} ms")
    print("| neuron | dtype | residuals | chunk | block | warps | fwd ms | fwd+bwd ms | "
          "spikes differ | grad rel err | first s |")
    for r in sorted(rows, key=lambda r: (r["neuron"], r["dtype"], r["fwd_bwd_ms"])):
        print(f"| {r['neuron']} | {r['dtype']} | {r.get('residuals', 'auto')} | "
              f"{r.get('chunk', '-')} | {r.get('block_n', '-')} | {r.get('num_warps', '-')} | "
              f"{r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | {r.get('spikes_differ', '-')} | "
              f"{r.get('grad_rel_err', float('nan')):.1e} | {r['first_call_s']:.2f} |")
    for name, (bf, bb) in best.items():
        print(f"{name} best fwd: {({k: bf[k] for k in keys})} {bf['fwd_ms']:.3f} ms; best fwd+bwd: "
              f"{({k: bb[k] for k in keys})} {bb['fwd_bwd_ms']:.3f} ms")


if __name__ == "__main__":
    main()
