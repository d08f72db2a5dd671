"""What the inference forward of LIF (T=16, N=8M, fp32: x in, fp32 spikes and the final v out)
can reach on this GPU: the library's Triton and Mosaic forwards beside XLA's own elementwise
kernels over the same bytes, in the same run (GPU).

    python3 benchmarks/forward_floor.py [--reps 25] [--rounds 2] [--no-tma]

Rows (ms; TB/s counts bytes read + written):

* ``copy 2 GiB``: ``a * 1.5`` over 2 GiB, as ``bench_neurons.copy_bandwidth``;
* ``x * 1.5``: the same over ``x`` itself, ``[16, 8M]`` fp32 (1.07 GB moved);
* ``XLA twin``: ``(x >= 1, x[-1] + v0)``, one fused XLA kernel with the forward's traffic
  (x read, spikes written, v read and written: 1.14 GB);
* ``snnjax pallas`` / ``snnjax mosaic``: ``LIFNode(step_mode='m').multi_step`` on each kernel
  backend (1.14 GB);
* ``TMA pipeline``: a hand-written Mosaic kernel of the same LIF forward whose rows go through
  shared memory by TMA (``plgpu.emit_pipeline``, several time chunks in flight): the staging
  the library's kernels do without. Spikes and v are checked equal to the library's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

sys.path[:0] = [os.path.join(os.path.dirname(__file__), ".."), os.path.dirname(__file__)]
from bench_neurons import copy_bandwidth, timeit  # noqa: E402
from snnjax import neuron  # noqa: E402

T, N = 16, 8388608
TMA_VARIANTS = [(256, 4, 4), (256, 2, 4), (256, 16, 1), (256, 8, 2)]   # block, chunk, in flight


def tma_forward(block: int, chunk: int, in_flight: int):
    """LIF forward (tau 2, theta 1, hard reset to 0, decay_input, the library's saturation and
    NaN-propagating spike): TMA copies of ``[chunk, block]`` tiles into shared memory, rows
    read from there; one warpgroup per ``block`` neurons."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import mosaic_gpu as plgpu
    layout = plgpu.Layout.WG_STRIDED((block,), vec_size=min(block // 128, 4))
    big = float(jnp.finfo(jnp.float32).max)

    def body(x_gmem, v0_gmem, s_gmem, v_gmem):
        b = lax.axis_index("b")
        cols = pl.ds(b * block, block)
        v = plgpu.load(v0_gmem.at[0, cols], layout=layout, optimized=False)

        def steps(_, x_smem, s_smem, v):
            for k in range(chunk):
                x = plgpu.load(x_smem.at[k], layout=layout)
                h = v + (x - v) * 0.5
                d = h - 1.0
                s = jnp.where(d != d, d, (d >= 0).astype(jnp.float32))
                h = jnp.where(h > big, big, jnp.where(h < -big, -big, h))
                v = s * 0.0 + (1.0 - s) * h
                s_smem[k] = s
            return plgpu.layout_cast(v, layout)

        spec = plgpu.BlockSpec((chunk, block), lambda t: (t, b))
        v = plgpu.emit_pipeline(steps, grid=(T // chunk,), in_specs=[spec], out_specs=[spec],
                                max_concurrent_steps=in_flight, init_carry=v)(x_gmem, s_gmem)
        v_gmem[0, cols] = v

    kernel = plgpu.kernel(
        body, out_type=(jax.ShapeDtypeStruct((T, N), jnp.float32),
                        jax.ShapeDtypeStruct((1, N), jnp.float32)),
        grid=(N // block,), grid_names=("b",),
        compiler_params=plgpu.CompilerParams(lowering_semantics=plgpu.LoweringSemantics.Lane))
    return jax.jit(lambda x, v0: kernel(x, v0.reshape(1, N)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-tma", action="store_true")
    a = ap.parse_args()
    x = jax.random.normal(jax.random.PRNGKey(0), (T, N), jnp.float32) * 0.6 + 0.5
    v0 = jnp.zeros(N, jnp.float32)
    traffic = 2 * x.size * 4 + 2 * N * 4
    rows = [("x * 1.5", jax.jit(lambda x: x * 1.5), (x,), 2 * x.size * 4),
            ("XLA twin", jax.jit(lambda x, v0: ((x >= 1.0).astype(jnp.float32), x[-1] + v0)),
             (x, v0), traffic + N * 4)]
    ref = None
    for backend in ("pallas", "mosaic"):
        m = neuron.LIFNode(step_mode="m", backend=backend)
        f = jax.jit(lambda x, s0, m=m: m.multi_step(s0, x)[::-1])   # (spikes, final state)
        s0 = m.init_state(x[0])
        out = f(x, s0)
        ref = (out[0], out[1]["v"]) if ref is None else ref
        rows.append((f"snnjax {backend}", f, (x, s0), traffic))
    if not a.no_tma:
        for block, chunk, in_flight in TMA_VARIANTS:
            f = tma_forward(block, chunk, in_flight)
            s, v = f(x, v0)
            same = bool((s == ref[0]).all()) and bool((v[0] == ref[1]).all())
            rows.append((f"TMA pipeline block {block} chunk {chunk} in flight {in_flight}"
                         + ("" if same else " (DIFFERS)"), f, (x, v0), traffic))
    for r in range(a.rounds):
        print(json.dumps(dict(round=r, row="copy 2 GiB",
                              tbs=round(copy_bandwidth(15) / 1e12, 3))), flush=True)
        for name, f, args, nbytes in rows:
            ms = timeit(f, *args, reps=a.reps)
            print(json.dumps(dict(round=r, row=name, ms=round(ms, 4),
                                  tbs=round(nbytes / (ms * 1e-3) / 1e12, 3))), flush=True)


if __name__ == "__main__":
    main()
