"""The chunk rule's cases on the GPU: forward+backward at chunk 8, 4 and 6 on Triton and Mosaic
for steps whose ``'recompute'`` backward keeps two or more values per step because a
hyperparameter is learnable (PLIF's ``w``, LIF's ``tau``) or because of the equations
(Izhikevich), beside plain LIF (one value). ``generator.default_chunk`` picks 4 where the
equations keep more than one value (Izhikevich), 8 otherwise (a learnable hyperparameter's
value does not count).

    python3 benchmarks/chunk_rule.py [--T 16] [--N 8388608] [--reps 15]

Timing as ``bench_neurons.py`` (median of back-to-back calls); gradient of ``sum(spikes * g)``
w.r.t. the input and the learnable hyperparameters.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path[:0] = [os.path.join(os.path.dirname(__file__), ".."), os.path.dirname(__file__)]
from bench_neurons import timeit  # noqa: E402
from snnjax import kernels, neuron  # noqa: E402

CASES = [("ParametricLIFNode", ("w",)), ("LIFNode", ("tau",)), ("IzhikevichNode", ()),
         ("LIFNode", ())]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--N", type=int, default=8388608)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (a.T, a.N), jnp.float32) * 0.6 + 0.5
    g = jax.random.normal(jax.random.fold_in(key, 1), (a.T, a.N), jnp.float32)
    for name, learn in CASES:
        for backend in ("pallas", "mosaic"):
            for chunk in (8, 4, 6):
                m = getattr(neuron, name)(step_mode="m", backend=backend)
                p = {k: jnp.asarray(v) for k, v in m.params().items() if k in learn}
                s0 = m.init_state(x[0])

                def loss(x, p, s0, g, m=m):
                    return jnp.sum(m.multi_step(s0, x, p)[1] * g)
                with kernels.default_config(chunk=chunk):
                    fb = jax.jit(jax.grad(loss, argnums=(0, 1)))
                    ms = timeit(fb, x, p, s0, g, reps=a.reps)
                print(json.dumps(dict(neuron=name, learn=learn, backend=backend, chunk=chunk,
                                      fwd_bwd_ms=round(ms, 4))), flush=True)


if __name__ == "__main__":
    main()
