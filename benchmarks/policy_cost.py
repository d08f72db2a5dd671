"""What each part of the non-finite policy costs the fused kernels (GPU), T=16, N=8M.

Times ``bench_neurons.bench_jax`` (forward, forward+backward) with parts of a step patched out
(measurement only, not a supported configuration). Cases (``--cases``, comma-separated):

* ``izhikevich``: the reset's saturation (``nosat``), the charge and adaptation clamps
  (``noclamp``), the NaN-propagating ``max``/``min`` rewrite of the Triton lowering (``nonan``),
  and all three.
* ``plif-state``: PLIF with and without the state saturation after its (hard) reset.
* ``lif-bf16``: bf16 LIF and PLIF (fp32): as is (the reset takes the spike without the NaN
  rule, ``steps.common.fire_for_state``; the saturation one ``clamp``); with the NaN-ruled
  spike in the reset (``nan_spike_in_reset``: the fused backward then tests NaN); with the
  saturation as two selects (``select_saturate``); with neither the NaN rule nor the reset's
  saturation (``no_nan_rule``, ``no_reset_sat``: the kernels' operations before the policy).
  At the default chunk and, for PLIF, also at chunk 8.

``--baseline-src DIR`` also times bf16 LIF, PLIF and fp32 LIF (Triton) from another checkout
(e.g. the last commit before the policy: ``git worktree add /tmp/pre-policy 383b53f``), in a
subprocess, before and after the cases, so that the comparison is within one run::

    python3 benchmarks/policy_cost.py --cases lif-bf16 --baseline-src /tmp/pre-policy
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..")]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import bench_neurons as bn  # noqa: E402
from snnjax import kernels  # noqa: E402
from snnjax.kernels import generator, jaxpr_tools  # noqa: E402
from snnjax.steps import adaptive, common, integrate_and_fire  # noqa: E402
from snnjax.surrogate import base as surrogate_base  # noqa: E402

T, N = 16, 8388608
ORIG = dict(adaptive_reset=adaptive.reset, clamp=adaptive.clamp_membrane,
            may_be_nan=jaxpr_tools._may_be_nan, saturate=common._saturate,
            fire_for_state=common.fire_for_state, base_nan=surrogate_base.propagate_nan,
            common_nan=common.propagate_nan)


def _reset_nosat(h, spike, v_threshold, v_reset, *, soft_reset, detach_reset):
    s = jax.lax.stop_gradient(spike) if detach_reset else spike
    return h - s * v_threshold if soft_reset else s * v_reset + (1.0 - s) * h


def _saturate_by_selects(v):   # the form before the clamp (same values)
    big = jnp.finfo(v.dtype).max
    return jnp.where(v > big, big, jnp.where(v < -big, -big, v))


def _fire_nan_spike_in_reset(h, v_threshold, surrogate):   # the reset gets the NaN-ruled spike
    spike = common.fire(h, v_threshold, surrogate)
    return spike, spike


def patch(nosat=False, noclamp=False, nonan=False, no_reset_sat=False, no_nan_rule=False,
          select_saturate=False, nan_spike_in_reset=False):
    adaptive.reset = _reset_nosat if nosat else ORIG["adaptive_reset"]
    adaptive.clamp_membrane = (lambda h: h) if noclamp else ORIG["clamp"]
    jaxpr_tools._may_be_nan = (lambda v: False) if nonan else ORIG["may_be_nan"]
    common._saturate = ((lambda v: v) if no_reset_sat else
                        _saturate_by_selects if select_saturate else ORIG["saturate"])
    surrogate_base.propagate_nan = (lambda x, s: s) if no_nan_rule else ORIG["base_nan"]
    common.propagate_nan = (lambda x, s: s) if no_nan_rule else ORIG["common_nan"]
    common.fire_for_state = (_fire_nan_spike_in_reset if nan_spike_in_reset
                             else ORIG["fire_for_state"])
    for f in vars(generator).values():
        if hasattr(f, "cache_clear"):
            f.cache_clear()


def report(name, backend, variant, r, **extra):
    print(json.dumps({"neuron": name, "backend": backend, "variant": variant, **extra,
                      "fwd_ms": round(r["fwd_ms"], 4), "fwd_bwd_ms": round(r["fwd_bwd_ms"], 4)}),
          flush=True)


def izhikevich(reps):
    for backend in ("pallas", "mosaic"):
        for v in ({}, {"nosat": True}, {"noclamp": True}, {"nonan": True},
                  {"nosat": True, "noclamp": True, "nonan": True}):
            if backend == "mosaic" and "nonan" in v and len(v) == 1:
                continue
            patch(**v)
            report("Izhikevich", backend, v, bn.bench_jax("Izhikevich", backend, T, N, reps=reps))
    patch()


def plif_state(reps):
    # the hard reset of the saturated charge bounds PLIF's state; the default leaves out the
    # second saturation (steps.common.keeps_state_bounded); put it back to measure its cost
    bound = common._BOUNDED_STEPS[integrate_and_fire.plif_step]
    for saturated in (False, True):
        if saturated:
            del common._BOUNDED_STEPS[integrate_and_fire.plif_step]
        patch()
        for backend in ("pallas", "mosaic"):
            report("PLIF", backend, {"state_saturation": saturated},
                   bn.bench_jax("PLIF", backend, T, N, reps=reps))
        common._BOUNDED_STEPS[integrate_and_fire.plif_step] = bound
    patch()


def lif_bf16(reps):
    for name, dtype, chunks in (("LIF", jnp.bfloat16, (None,)), ("PLIF", jnp.float32, (None, 8))):
        for backend in ("pallas", "mosaic"):
            for chunk in chunks:
                for v in ({}, {"nan_spike_in_reset": True}, {"select_saturate": True},
                          {"no_nan_rule": True, "no_reset_sat": True}):
                    patch(**v)
                    with kernels.default_config(chunk=chunk):
                        r = bn.bench_jax(name, backend, T, N, reps=reps, dtype=dtype)
                    report(name, backend, v, r, dtype=jnp.dtype(dtype).name,
                           chunk=chunk or "default")
    patch()


BASELINE = """
import json, sys
sys.path[:0] = [{src!r} + "/benchmarks", {src!r}]
import jax.numpy as jnp, bench_neurons as bn, snnjax
assert snnjax.__file__.startswith({src!r}), snnjax.__file__
for name, dt in (("LIF", jnp.bfloat16), ("PLIF", jnp.float32), ("LIF", jnp.float32)):
    r = bn.bench_jax(name, "pallas", 16, 8388608, reps={reps}, dtype=dt)
    print(json.dumps({{"neuron": name, "backend": "pallas", "variant": "baseline " + {label!r},
                      "dtype": jnp.dtype(dt).name, "fwd_ms": round(r["fwd_ms"], 4),
                      "fwd_bwd_ms": round(r["fwd_bwd_ms"], 4)}}), flush=True)
"""


def baseline(src: str, reps: int) -> None:
    src = os.path.abspath(src)
    label = os.path.basename(src)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", BASELINE.format(src=src, reps=reps, label=label)],
                   check=True, env=env)


CASES = {"izhikevich": izhikevich, "plif-state": plif_state, "lif-bf16": lif_bf16}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="izhikevich,plif-state")
    ap.add_argument("--baseline-src", default=None, help="another checkout, timed in the same run")
    ap.add_argument("--reps", type=int, default=25)
    a = ap.parse_args()
    cases = [c for c in a.cases.split(",") if c]   # --cases "": the baseline alone
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from {sorted(CASES)}")
    if a.baseline_src:
        baseline(a.baseline_src, a.reps)
    for c in cases:
        CASES[c](a.reps)
    if a.baseline_src:
        baseline(a.baseline_src, a.reps)


if __name__ == "__main__":
    main()
