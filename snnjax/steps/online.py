"""Online-learning LIF steps: OTTT and SLTT (SpikingJelly's ``online_learning`` neurons).

Both neurons are LIF neurons whose single-step transition depends on the training mode:

* training: the incoming membrane is detached, ``V' = sg(V[t-1])``, so no gradient crosses time
  steps through ``V`` (online training: the gradient of step ``t`` only needs step ``t``);
  the spike uses the configured surrogate;
* eval: no detach and the spike is the plain Heaviside step ``Theta(0) = 1`` (no gradient).

The transition itself is the LIF step

    H[t] = V' + (X[t] - (V' - r)) / tau      (decay_input)
    H[t] = V' - (V' - r) / tau + X[t]        (not decay_input)
    S[t] = Theta_sg(H[t] - theta)
    V[t] = S * V_r + (1 - S) * H   (hard)    or    V[t] = H - S * theta   (soft)

with ``r = V_r`` (hard reset) or 0 (soft reset). OTTT additionally keeps a presynaptic trace,
updated without gradient in training: ``tr[t] = (1 - 1/tau) * tr[t-1] + S[t]``.

Shapes: ``state["v"]``, ``state["trace"]`` and ``x`` are ``[N, *]``; every operation is elementwise.
"""
from __future__ import annotations

import jax

from snnjax.steps.common import Array, SpikeFn, cast_out, fire_and_reset, state_dtype
from snnjax.steps.integrate_and_fire import lif_charge
from snnjax.surrogate import heaviside


def _online_lif_transition(v: Array, x: Array, params: dict, *, surrogate: SpikeFn,
                           decay_input: bool, soft_reset: bool, detach_reset: bool,
                           training: bool) -> tuple[Array, Array]:
    """The shared OTTT/SLTT transition; returns ``(V[t], S[t])`` (state dtype)."""
    if training:
        v = jax.lax.stop_gradient(v)  # online training: no gradient through time via V
    h = lif_charge(v, x.astype(state_dtype(x.dtype)), params, decay_input=decay_input,
                   soft_reset=soft_reset)
    # eval: a hard step whatever surrogate is configured (the reference's inference path)
    spike_fn = surrogate if training else heaviside
    v_next, spike = fire_and_reset(h, params, surrogate=spike_fn, soft_reset=soft_reset,
                                   detach_reset=detach_reset)
    return v_next, spike


def sltt_lif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn,
                  decay_input: bool = True, soft_reset: bool = False, detach_reset: bool = True,
                  training: bool = True) -> tuple[dict, Array]:
    """SLTT LIF step: ``({"v": V[t-1]}, X[t]) -> ({"v": V[t]}, S[t])``.

    ``params``: ``tau``, ``v_threshold``, ``v_reset`` (scalars or broadcastable arrays).
    In training ``V[t-1]`` enters without gradient, so ``dS[t]/dX[t'] = 0`` for ``t' != t``.
    """
    v = state["v"]
    v_next, spike = _online_lif_transition(v, x, params, surrogate=surrogate,
                                           decay_input=decay_input, soft_reset=soft_reset,
                                           detach_reset=detach_reset, training=training)
    return {"v": v_next.astype(v.dtype)}, cast_out(spike, x)


def ottt_lif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn,
                  decay_input: bool = False, soft_reset: bool = True, detach_reset: bool = True,
                  training: bool = True) -> tuple[dict, Array | tuple[Array, Array]]:
    """OTTT LIF step: ``({"v", "trace"}, X[t]) -> ({"v", "trace"}, out)``.

    Training: ``tr[t] = sg((1 - 1/tau) * tr[t-1] + S[t])`` and ``out = (S[t], tr[t])`` (the spike
    carries the surrogate gradient, the trace none). Eval: the trace is left unchanged and
    ``out = S[t]`` (Heaviside, no gradient).
    """
    v = state["v"]
    v_next, spike = _online_lif_transition(v, x, params, surrogate=surrogate,
                                           decay_input=decay_input, soft_reset=soft_reset,
                                           detach_reset=detach_reset, training=training)
    new_state = {"v": v_next.astype(v.dtype), "trace": state["trace"]}
    if not training:
        return new_state, cast_out(spike, x)
    trace = state["trace"]
    trace = jax.lax.stop_gradient(trace * (1.0 - 1.0 / params["tau"]) + spike).astype(trace.dtype)
    new_state["trace"] = trace
    return new_state, (cast_out(spike, x), cast_out(trace, x))


__all__ = ["ottt_lif_step", "sltt_lif_step"]
