"""Adaptive and nonlinear integrate-and-fire neurons as pure step functions.

SpikingJelly's ``neuron.adapt`` (``AdaptBaseNode``, ``IzhikevichNode``) and
``neuron.nonlinear_if`` (``QIFNode``, ``EIFNode``).

Signature of every step: ``step(state, x, params, *, ...) -> (state, spike)`` with ``state`` a
dict of ``[N, *]`` arrays (``{"v": V}`` or ``{"v": V, "w": W}``), ``x`` the input ``[N, *]`` and
``params`` a dict of numeric hyperparameters (scalars or arrays broadcastable to ``[N, *]``,
possibly traced). Keyword-only arguments are static structure.

Overflow guard
--------------
The quadratic (QIF, Izhikevich) and exponential (EIF) charges grow without bound for large
membrane values: in float32 ``V**2`` overflows once ``|V| > 1.8e19`` and ``exp`` once its argument
exceeds 88.7, after which a hard reset computes ``0 * inf = NaN``. Here every charged potential
``H`` (and Izhikevich's ``W``) is clamped to ``[-B, B]`` with
``B = membrane_bound(dtype) = sqrt(finfo(dtype).max) / 4`` (4.6e18 in float32, 3.4e153 in
float64; bf16/fp16 inputs are computed in float32), and EIF's exponent is capped at ``log(B)``.
With ``|V| <= B`` every product in the next step stays finite, so no inf/NaN can appear from finite
inputs; values inside the bound (all realistic ones) are untouched, and a saturated value passes
zero gradient.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.steps.common import (Array, SpikeFn, cast_out, fire_for_state, keeps_state_bounded,
                                 reset, state_dtype)
from snnjax.steps.integrate_and_fire import spiking_step

AdaptCharge = Callable[[Array, Array, dict, Array], Array]
Adaptation = Callable[[Array, Array, dict], Array]


def membrane_bound(dtype: Any) -> float:
    """``B = sqrt(finfo(dtype).max) / 4``: the largest ``|H|`` (and ``|W|``) a nonlinear step keeps.

    ``B**2 * 16 = finfo.max``, so ``a0 * (V - v_rest) * (V - v_c)`` with ``|V| <= B`` and moderate
    ``a0``, ``v_rest``, ``v_c`` is finite.
    """
    return float(np.sqrt(np.finfo(np.dtype(dtype)).max)) / 4.0


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _clamp(h: Array, bound: float) -> Array:
    return jnp.clip(h, -bound, bound)


# clip's own derivative (through max and min) costs a fused backward kernel more selects
# and registers: one comparison gives the same gradient (zero where clamped; NaN passes)
_clamp.defjvp(lambda bound, primals, tangents: (
    _clamp(primals[0], bound),
    jnp.where(jnp.abs(primals[0]) > bound, jnp.zeros_like(tangents[0]), tangents[0])))


def clamp_membrane(h: Array) -> Array:
    """Clamp to ``[-B, B]`` (see :func:`membrane_bound`); ``+-inf`` become ``+-B``. Gradient 1
    inside the bound, 0 where clamped."""
    return _clamp(h, membrane_bound(h.dtype))


# --- charge equations ---------------------------------------------------------------------------

def qif_charge(v: Array, x: Array, params: dict) -> Array:
    """Quadratic integrate-and-fire charge.

    ``H = V + (X + a0 * (V - v_rest) * (V - v_c)) / tau``, clamped to ``[-B, B]``.
    Params: ``tau``, ``a0``, ``v_rest``, ``v_c``.
    """
    quad = params["a0"] * (v - params["v_rest"]) * (v - params["v_c"])
    return clamp_membrane(v + (x + quad) / params["tau"])


def eif_charge(v: Array, x: Array, params: dict) -> Array:
    """Exponential integrate-and-fire charge.

    ``H = V + (X + v_rest - V + delta_T * exp((V - theta_rh) / delta_T)) / tau``, with the exponent
    capped at ``log(B)`` and ``H`` clamped to ``[-B, B]``.
    Params: ``tau``, ``delta_T``, ``theta_rh``, ``v_rest``.
    """
    delta_t = params["delta_T"]
    arg = jnp.minimum((v - params["theta_rh"]) / delta_t, math.log(membrane_bound(v.dtype)))
    return clamp_membrane(v + (x + params["v_rest"] - v + delta_t * jnp.exp(arg)) / params["tau"])


def izhikevich_charge(v: Array, x: Array, params: dict, w: Array) -> Array:
    """Izhikevich charge: QIF minus the recovery current.

    ``H = V + (X + a0 * (V - v_rest) * (V - v_c) - W) / tau``, clamped to ``[-B, B]``.
    """
    quad = params["a0"] * (v - params["v_rest"]) * (v - params["v_c"])
    return clamp_membrane(v + (x + quad - w) / params["tau"])


def adaptation_update(w: Array, v: Array, params: dict) -> Array:
    """Subthreshold adaptation ``W' = W + (a * (V - v_rest) - W) / tau_w`` (no spike term).

    SpikingJelly's ``AdaptBaseNode.neuronal_adaptation``; the adaptive step evaluates it at the
    charged potential ``H`` and adds the spike-triggered jump ``b * S`` separately.
    """
    return w + (params["a"] * (v - params["v_rest"]) - w) / params["tau_w"]


# --- whole steps --------------------------------------------------------------------------------

def adaptive_step(state: dict, x: Array, params: dict, *, charge: AdaptCharge, surrogate: SpikeFn,
                  soft_reset: bool, detach_reset: bool,
                  adaptation: Adaptation = adaptation_update) -> tuple[dict, Array]:
    """Two-state (``v``, ``w``) spiking step of the adaptive neurons.

    ``H = charge(V, X, params, W)``, ``S = sg(H - v_threshold)``,
    ``W' = adaptation(W, H, params) + b * S`` (pre-reset ``H``, old ``W``, undetached ``S``),
    ``V' = S * v_reset + (1 - S) * H`` (hard) or ``H - S * v_threshold`` (soft; ``detach_reset``
    stops the spike's gradient in this reset only). ``W'`` is clamped to ``[-B, B]``.

    Shapes: ``state["v"]``, ``state["w"]``, ``x``: ``[N, *]``. Returns
    ``({"v": V', "w": W'}, S)`` with ``S`` in ``x``'s dtype.
    Params: ``v_threshold``, ``v_reset``, ``b`` plus what ``charge`` / ``adaptation`` read.
    """
    v, w = state["v"], state["w"]
    h = charge(v, x.astype(state_dtype(x.dtype)), params, w)
    for_state, spike = fire_for_state(h, params["v_threshold"], surrogate)
    # a NaN charge makes W' NaN through the adaptation (it reads H)
    w_next = clamp_membrane(adaptation(w, h, params) + params["b"] * for_state)
    v_next = reset(h, for_state, params["v_threshold"], params.get("v_reset", 0.0),
                   soft_reset=soft_reset, detach_reset=detach_reset)
    return {"v": v_next.astype(v.dtype), "w": w_next.astype(w.dtype)}, cast_out(spike, x)


@keeps_state_bounded
def izhikevich_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, soft_reset: bool,
                    detach_reset: bool) -> tuple[dict, Array]:
    """Izhikevich neuron: :func:`adaptive_step` with :func:`izhikevich_charge`.

    ``H = V + (X + a0 (V - v_rest)(V - v_c) - W) / tau``; ``S = sg(H - theta)``;
    ``W' = W + (a (H - v_rest) - W) / tau_w + b S``; ``V' = reset(H, S)``.
    Params: ``tau``, ``v_c``, ``a0``, ``v_threshold``, ``v_reset``, ``v_rest``, ``tau_w``, ``a``, ``b``.
    """
    return adaptive_step(state, x, params, charge=izhikevich_charge, surrogate=surrogate,
                         soft_reset=soft_reset, detach_reset=detach_reset)


@keeps_state_bounded
def qif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, soft_reset: bool,
             detach_reset: bool) -> tuple[dict, Array]:
    """QIF: :func:`qif_charge` (clamped), then fire and reset. Shapes ``[N, *]``."""
    return spiking_step(state, x, params, charge=qif_charge, surrogate=surrogate,
                        soft_reset=soft_reset, detach_reset=detach_reset)


@keeps_state_bounded
def eif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, soft_reset: bool,
             detach_reset: bool) -> tuple[dict, Array]:
    """EIF: :func:`eif_charge` (capped exponent, clamped), then fire and reset."""
    return spiking_step(state, x, params, charge=eif_charge, surrogate=surrogate,
                        soft_reset=soft_reset, detach_reset=detach_reset)


__all__ = [
    "adaptation_update", "adaptive_step", "clamp_membrane", "eif_charge", "eif_step",
    "izhikevich_charge", "izhikevich_step", "membrane_bound", "qif_charge", "qif_step",
]
