"""LIF variants as pure step functions: KLIF, CUBA-LIF, LIAF and GLIF (gated LIF).

SpikingJelly's ``neuron.lif_variants``. Signature of every step:
``step(state, x, params, *, ...) -> (state, out)`` with ``state`` a dict of ``[N, *]`` arrays,
``x`` the input ``[N, *]``, ``params`` a dict of numeric hyperparameters and learnable values
(scalars or arrays broadcastable to ``[N, *]``, possibly traced). Keyword-only arguments are
static structure. The LIF charge is :func:`snnjax.steps.lif_charge`.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from snnjax.steps.common import (
    Array, SpikeFn, cast_out, fire, fire_and_reset, fire_for_state, reset, state_dtype,
)
from snnjax.steps.integrate_and_fire import lif_charge


def klif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, decay_input: bool,
              soft_reset: bool, detach_reset: bool, scale_reset: bool) -> tuple[dict, Array]:
    """KLIF: LIF whose charged potential is scaled by a learnable ``k`` and rectified.

    ``H = charge_LIF(V, X)``, ``F = relu(k * H)``, ``S = sg(F - theta)``;
    ``scale_reset=False``: ``V' = reset(F, S)`` with threshold ``theta``;
    ``scale_reset=True``: ``V' = S * v_reset + (1 - S) * F / k`` (hard; ``v_reset`` is not scaled)
    or ``F / k - S * theta / k`` (soft).
    Params: ``tau``, ``k``, ``v_threshold``, ``v_reset``. Shapes ``[N, *]``; spike in ``x``'s dtype.
    """
    v = state["v"]
    h = lif_charge(v, x.astype(state_dtype(x.dtype)), params, decay_input=decay_input,
                   soft_reset=soft_reset)
    k, theta = params["k"], params["v_threshold"]
    f = jax.nn.relu(k * h)  # relu'(0) = 0, as torch.relu
    for_state, spike = fire_for_state(f, theta, surrogate)
    if scale_reset:
        v_next = reset(f / k, for_state, theta / k, params.get("v_reset", 0.0),
                       soft_reset=soft_reset, detach_reset=detach_reset)
    else:
        v_next = reset(f, for_state, theta, params.get("v_reset", 0.0),
                       soft_reset=soft_reset, detach_reset=detach_reset)
    return {"v": v_next.astype(v.dtype)}, cast_out(spike, x)


def cuba_charge(state: dict, x: Array, params: dict) -> dict:
    """Current-based charge: ``C' = c_decay * C + X``; ``H = v_decay * V + C'`` (``C`` is never reset).

    Returns the state with ``c = C'`` and ``v = H`` (the charged, pre-fire potential).
    """
    c = params["c_decay"] * state["c"] + x
    return {**state, "c": c, "v": params["v_decay"] * state["v"] + c}


def cuba_lif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, soft_reset: bool,
                  detach_reset: bool) -> tuple[dict, Array]:
    """Current-based LIF: a synaptic current low-pass filters the input.

    ``C' = c_decay * C + X``, ``H = v_decay * V + C'``, ``S = sg(H - theta)``, ``V' = reset(H, S)``;
    the current is never reset. State ``{"v", "c"}``; params ``c_decay``, ``v_decay``,
    ``v_threshold``, ``v_reset``. Shapes ``[N, *]``; spike in ``x``'s dtype.
    """
    charged = cuba_charge(state, x.astype(state_dtype(x.dtype)), params)
    v_next, spike = fire_and_reset(charged["v"], params, surrogate=surrogate,
                                   soft_reset=soft_reset, detach_reset=detach_reset)
    return ({"v": v_next.astype(state["v"].dtype), "c": charged["c"].astype(state["c"].dtype)},
            cast_out(spike, x))


def liaf_step(state: dict, x: Array, params: dict, *, act: Callable[[Array], Array],
              threshold_related: bool, surrogate: SpikeFn, decay_input: bool, soft_reset: bool,
              detach_reset: bool) -> tuple[dict, Array]:
    """Leaky integrate and analog fire: LIF dynamics, analog output.

    ``H = charge_LIF(V, X)``, ``Y = act(H - theta)`` (``threshold_related``) or ``act(H)``,
    ``S = sg(H - theta)`` (used only for the reset), ``V' = reset(H, S)``. Output ``Y`` in ``x``'s
    dtype. Params: ``tau``, ``v_threshold``, ``v_reset``. Shapes ``[N, *]``.
    """
    v = state["v"]
    h = lif_charge(v, x.astype(state_dtype(x.dtype)), params, decay_input=decay_input,
                   soft_reset=soft_reset)
    theta = params["v_threshold"]
    y = act(h - theta) if threshold_related else act(h)
    for_state, _ = fire_for_state(h, theta, surrogate)   # for the reset only: no NaN rule
    v_next = reset(h, for_state, theta, params.get("v_reset", 0.0), soft_reset=soft_reset,
                   detach_reset=detach_reset)
    return {"v": v_next.astype(v.dtype)}, cast_out(y, x)


GATED_LIF_STEP_PARAMS = ("alpha", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset")


def gated_lif_layout(p: Array, step_ndim: int, leading: int, channelwise: bool) -> Array:
    """A GLIF parameter ``(*lead, C)`` (``leading`` axes, e.g. 1 for the per-step ``conduct``) laid
    out for a ``[N, C, *]`` step of ``step_ndim`` axes: ``(*lead, 1, C, 1, ...)``; layer-wise
    (``channelwise=False``) a scalar (per step: ``(*lead, 1, ...)``)."""
    p = jnp.asarray(p)
    if not channelwise:
        return p.reshape(p.shape + (1,) * step_ndim) if leading else p
    lead, c = p.shape[:leading], p.shape[leading:]
    return p.reshape(lead + (1,) + c + (1,) * (step_ndim - 2))


def gated_lif_input(x_seq: Array, beta: Array, conduct: Array) -> Array:
    """GLIF's gated input current for the whole sequence (it does not depend on the state).

    ``I[t] = X[t] * (1 - sigmoid(beta) * (1 - sigmoid(conduct[t])))``.
    ``x_seq``: ``[T, N, *]``; ``beta`` broadcastable to ``[N, *]``; ``conduct`` broadcastable to
    ``[T, N, *]`` (one gate per time step).
    """
    return x_seq * (1.0 - jax.nn.sigmoid(beta) * (1.0 - jax.nn.sigmoid(conduct)))


def gated_lif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn) -> tuple[dict, Array]:
    """One GLIF step on the gated input current ``x = I[t]`` (see :func:`gated_lif_input`).

    With the gates ``a = sigmoid(alpha)``, ``g = sigmoid(gamma)``, ``q = sigmoid(tau)``,
    ``theta = sigmoid(v_threshold)``, ``lam = sigmoid(linear_decay)``, ``u = sigmoid(v_subreset)``
    and ``k = 1 - a (1 - q)``:

    ``V' = k V - (1 - a) lam + I - k V g S - (1 - g) u S``, ``S' = sg(V' - theta)``.

    The reset of a spike is applied in the next step through the previous spike ``S``, so the state
    is ``{"v": V, "s": S}`` (``S`` is not detached). Params are the raw (pre-sigmoid) values named
    in ``GATED_LIF_STEP_PARAMS``, broadcastable to ``[N, *]``. Output ``S'`` in ``x``'s dtype.
    """
    v, s = state["v"], state["s"]
    alpha = jax.nn.sigmoid(params["alpha"])
    gamma = jax.nn.sigmoid(params["gamma"])
    tau = jax.nn.sigmoid(params["tau"])
    k = 1.0 - alpha * (1.0 - tau)
    v_next = (k * v - (1.0 - alpha) * jax.nn.sigmoid(params["linear_decay"])) + x.astype(v.dtype)
    v_next = v_next - k * v * gamma * s - (1.0 - gamma) * jax.nn.sigmoid(params["v_subreset"]) * s
    spike = fire(v_next, jax.nn.sigmoid(params["v_threshold"]), surrogate)
    return {"v": v_next.astype(v.dtype), "s": spike.astype(s.dtype)}, cast_out(spike, x)


__all__ = [
    "GATED_LIF_STEP_PARAMS", "cuba_lif_step", "gated_lif_input", "gated_lif_layout", "gated_lif_step", "klif_step",
    "liaf_step",
]
