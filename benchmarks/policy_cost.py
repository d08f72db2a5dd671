"""What each part of the non-finite policy costs Izhikevich's fused kernels (GPU).

Times ``bench_neurons.bench_jax('Izhikevich', backend, 16, 8M)`` with parts of the step patched
out (measurement only, not a supported configuration): the reset's saturation (``nosat``), the
charge and adaptation clamps (``noclamp``), the NaN-propagating ``max``/``min`` rewrite of the
Triton lowering (``nonan``), and all three; and PLIF with and without the state saturation
after its (hard) reset (``state_saturation``). ``python benchmarks/policy_cost.py`` (needs a GPU).
"""
import sys, json
sys.path.insert(0, __file__.rsplit("/", 1)[0])
import jax, jax.numpy as jnp
import bench_neurons as bn
from snnjax.steps import adaptive, common, integrate_and_fire
from snnjax.kernels import generator, jaxpr_tools

orig_reset, orig_clamp, orig_nan = adaptive.reset, adaptive.clamp_membrane, jaxpr_tools._may_be_nan

def reset_nosat(h, spike, v_threshold, v_reset, *, soft_reset, detach_reset):
    s = jax.lax.stop_gradient(spike) if detach_reset else spike
    return h - s * v_threshold if soft_reset else s * v_reset + (1.0 - s) * h

def setv(nosat=False, noclamp=False, nonan=False):
    adaptive.reset = reset_nosat if nosat else orig_reset
    adaptive.clamp_membrane = (lambda h: h) if noclamp else orig_clamp
    jaxpr_tools._may_be_nan = (lambda v: False) if nonan else orig_nan
    generator._build.cache_clear()
    for f in vars(generator).values():
        if hasattr(f, "cache_clear"):
            f.cache_clear()

T, N = 16, 8388608
for name in ("Izhikevich",):
    for backend in ("pallas", "mosaic"):
        for v in ({}, {"nosat": True}, {"noclamp": True}, {"nonan": True},
                  {"nosat": True, "noclamp": True, "nonan": True}):
            if backend == "mosaic" and "nonan" in v and len(v) == 1:
                continue
            setv(**v)
            r = bn.bench_jax(name, backend, T, N, reps=25)
            print(json.dumps({"neuron": name, "backend": backend, "variant": v,
                              "fwd_ms": round(r["fwd_ms"], 3), "fwd_bwd_ms": round(r["fwd_bwd_ms"], 3)}), flush=True)
setv()

# PLIF: the hard reset of the saturated charge bounds the state; the default leaves out the
# second saturation (steps.common.keeps_state_bounded); put it back to measure what it costs
hard_reset_bound = common._BOUNDED_STEPS[integrate_and_fire.plif_step]
for saturated in (False, True):
    if saturated:
        del common._BOUNDED_STEPS[integrate_and_fire.plif_step]
    else:
        common._BOUNDED_STEPS[integrate_and_fire.plif_step] = hard_reset_bound
    setv()
    for backend in ("pallas", "mosaic"):
        r = bn.bench_jax("PLIF", backend, T, N, reps=25)
        print(json.dumps({"neuron": "PLIF", "backend": backend,
                          "variant": {"state_saturation": saturated},
                          "fwd_ms": round(r["fwd_ms"], 3), "fwd_bwd_ms": round(r["fwd_bwd_ms"], 3)}),
              flush=True)
common._BOUNDED_STEPS[integrate_and_fire.plif_step] = hard_reset_bound
