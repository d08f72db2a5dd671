"""The Mosaic inference forward's configuration space on the GPU: LIF T=16, N=8M (x in, fp32
spikes and the final v out, as ``bench_neurons.py``), block x row vector width x chunk, beside
the Triton forward in the same run; spikes checked equal to the first variant's.

    python3 benchmarks/sweep_mosaic_forward.py

The vector width (contiguous elements per thread, ``pallas_mosaic._row_layout``) is not a
``Config`` field; this script overrides it for the sweep.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path[:0] = [os.path.join(os.path.dirname(__file__), ".."), os.path.dirname(__file__)]
from bench_neurons import copy_bandwidth, timeit  # noqa: E402
from snnjax import kernels, neuron  # noqa: E402
from snnjax.kernels import generator, pallas_mosaic  # noqa: E402

VARIANTS = [("pallas", None, 0, None), ("mosaic", 256, 0, None)] + [
    ("mosaic", b, v, c) for b, v, c in [
        (256, 0, 1), (256, 0, 2), (256, 0, 4), (256, 0, 16), (512, 2, 1), (512, 2, 4),
        (512, 2, 8), (512, 4, 1), (512, 4, 4), (512, 4, 8), (1024, 2, 1), (1024, 2, 2),
        (1024, 2, 4), (1024, 4, 1), (1024, 4, 2), (2048, 2, 1), (2048, 4, 1), (128, 1, 8),
        (128, 1, 16)]]


def main() -> None:
    from jax.experimental.pallas import mosaic_gpu as plgpu
    print(f"copy {copy_bandwidth(15) / 1e12:.2f} TB/s", flush=True)
    T, N = 16, 8388608
    x = jax.random.normal(jax.random.PRNGKey(0), (T, N), jnp.float32) * 0.6 + 0.5
    default_layout = pallas_mosaic._row_layout
    ref = None
    for backend, block, vec, chunk in VARIANTS:
        pallas_mosaic._row_layout = (default_layout if not vec else
                                     lambda b, v=vec: plgpu.Layout.WG_STRIDED((b,), vec_size=v))
        generator._build.cache_clear()
        m = neuron.LIFNode(step_mode="m", backend=backend)
        fwd = jax.jit(lambda x, s0, m=m: m.multi_step(s0, x)[1])
        s0 = m.init_state(x[0])
        cfg = {k: v for k, v in dict(block_n=block, chunk=chunk).items() if v is not None}
        with kernels.default_config(**cfg):
            out = fwd(x, s0)
            ref = out if ref is None else ref
            ms = timeit(fwd, x, s0, reps=25)
        print(json.dumps(dict(backend=backend, block=block, vec=vec or "default", chunk=chunk,
                              fwd_ms=round(ms, 4), spikes_differ=int(jnp.sum(out != ref)))),
              flush=True)
    pallas_mosaic._row_layout = default_layout


if __name__ == "__main__":
    main()
