"""IF / LIF / PLIF and their Simple* and NonSpiking* relatives as pure step functions.

Every spiking step here has the signature ``step(state, x, params, *, ...) -> (state, spike)``
with ``state = {"v": V[t-1]}`` (shape ``[N, *]``), ``x = X[t]`` (same shape) and ``params`` a
dict of numeric hyperparameters (scalars or arrays broadcastable to ``[N, *]``, possibly traced).
Keyword-only arguments are static structure. Bind them with ``functools.partial`` to obtain a
``(state, x, params) -> (state, out)`` step for ``snnjax.kernels.multi_step``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from snnjax.steps.common import (Array, SpikeFn, cast_out, fire_and_reset, hard_reset,
                                 keeps_state_bounded, rest_level, state_dtype)

Charge = Callable[[Array, Array, dict], Array]


# --- charge equations: V[t-1], X[t] -> H[t] ---------------------------------------------------

def if_charge(v: Array, x: Array, params: dict) -> Array:
    """``H = V + X``."""
    return v + x


def lif_charge(v: Array, x: Array, params: dict, *, decay_input: bool, soft_reset: bool) -> Array:
    """``H = V + (X - (V - r)) / tau`` (decay_input) or ``H = V - (V - r) / tau + X``.

    ``r`` is ``v_reset`` with hard reset and 0 with soft reset.
    """
    r = rest_level(params, soft_reset)
    tau = params["tau"]
    if decay_input:
        return v + (x - (v - r)) / tau
    return v - (v - r) / tau + x


def plif_charge(v: Array, x: Array, params: dict, *, decay_input: bool, soft_reset: bool) -> Array:
    """LIF with a learnable decay ``q = sigmoid(w)`` in place of ``1 / tau``.

    ``H = V + (X - (V - r)) * q`` (decay_input) or ``H = V - (V - r) * q + X``.
    """
    r = rest_level(params, soft_reset)
    q = jax.nn.sigmoid(params["w"])
    if decay_input:
        return v + (x - (v - r)) * q
    return v - (v - r) * q + x


def simple_lif_charge(v: Array, x: Array, params: dict, *, decay_input: bool) -> Array:
    """SimpleLIFNode's grouping: ``H = V + (V_r - V + X) / tau`` or ``H = V + (V_r - V) / tau + X``."""
    tau, v_reset = params["tau"], params["v_reset"]
    if decay_input:
        return v + (v_reset - v + x) / tau
    return v + (v_reset - v) / tau + x


def nonspiking_lif_charge(v: Array, x: Array, params: dict) -> Array:
    """NonSpikingLIFNode leaks towards 0: ``V = V + (X - V) / tau``."""
    return v + (x - v) / params["tau"]


# --- whole steps ------------------------------------------------------------------------------

def spiking_step(state: dict, x: Array, params: dict, *, charge: Charge, surrogate: SpikeFn,
                 soft_reset: bool, detach_reset: bool) -> tuple[dict, Array]:
    """Charge -> fire -> reset for a one-state (``v``) neuron.

    ``H[t] = charge(V[t-1], X[t])``, ``S[t] = sg(H[t] - theta)``, ``V[t] = reset(H[t], S[t])``.
    Shapes: ``state["v"]`` and ``x`` are ``[N, *]``; returns ``({"v": V[t]}, S[t])`` with the
    spike in ``x``'s dtype and ``V`` in ``state_dtype(x.dtype)``.
    """
    v = state["v"]
    h = charge(v, x.astype(state_dtype(x.dtype)), params)
    v_next, spike = fire_and_reset(h, params, surrogate=surrogate, soft_reset=soft_reset,
                                   detach_reset=detach_reset)
    return {"v": v_next.astype(v.dtype)}, cast_out(spike, x)


def integrator_step(state: dict, x: Array, params: dict, *, charge: Charge) -> tuple[dict, Array]:
    """Non-spiking step: ``V[t] = charge(V[t-1], X[t])``; the output is ``V[t]`` in ``x``'s dtype."""
    v = state["v"]
    v_next = charge(v, x.astype(state_dtype(x.dtype)), params).astype(v.dtype)
    return {"v": v_next}, cast_out(v_next, x)


@keeps_state_bounded(when=hard_reset)
def if_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, soft_reset: bool,
            detach_reset: bool) -> tuple[dict, Array]:
    """IF (also SimpleIF, HalfThresholdIF): ``H = V + X``, then fire and reset.

    Params ``v_threshold``, ``v_reset``. Shapes ``[N, *]``; spike in ``x``'s dtype.
    """
    return spiking_step(state, x, params, charge=if_charge, surrogate=surrogate,
                        soft_reset=soft_reset, detach_reset=detach_reset)


@keeps_state_bounded(when=hard_reset)
def lif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, decay_input: bool,
             soft_reset: bool, detach_reset: bool) -> tuple[dict, Array]:
    """LIF: :func:`lif_charge`, then fire and reset. Params ``tau``, ``v_threshold``, ``v_reset``."""
    charge = functools.partial(lif_charge, decay_input=decay_input, soft_reset=soft_reset)
    return spiking_step(state, x, params, charge=charge, surrogate=surrogate,
                        soft_reset=soft_reset, detach_reset=detach_reset)


@keeps_state_bounded(when=hard_reset)
def plif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn, decay_input: bool,
              soft_reset: bool, detach_reset: bool) -> tuple[dict, Array]:
    """Parametric LIF: :func:`plif_charge` (decay ``sigmoid(w)``), then fire and reset."""
    charge = functools.partial(plif_charge, decay_input=decay_input, soft_reset=soft_reset)
    return spiking_step(state, x, params, charge=charge, surrogate=surrogate,
                        soft_reset=soft_reset, detach_reset=detach_reset)


@keeps_state_bounded(when=hard_reset)
def simple_lif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn,
                    decay_input: bool, soft_reset: bool, detach_reset: bool) -> tuple[dict, Array]:
    """SimpleLIF: :func:`simple_lif_charge`, then fire and reset."""
    charge = functools.partial(simple_lif_charge, decay_input=decay_input)
    return spiking_step(state, x, params, charge=charge, surrogate=surrogate,
                        soft_reset=soft_reset, detach_reset=detach_reset)


def nonspiking_if_step(state: dict, x: Array, params: dict) -> tuple[dict, Array]:
    """Perfect integrator ``V = V + X``; the output is ``V``."""
    return integrator_step(state, x, params, charge=if_charge)


def nonspiking_lif_step(state: dict, x: Array, params: dict) -> tuple[dict, Array]:
    """Leaky integrator ``V = V + (X - V) / tau``; the output is ``V``."""
    return integrator_step(state, x, params, charge=nonspiking_lif_charge)


DECODES = ("max-mem", "max-abs-mem", "mean-mem", "last_mem", "last-mem", None)


def _take_at(seq: Array, index: Array) -> Array:
    return jnp.take_along_axis(seq, index[None], axis=0)[0]


def decode_membrane(v_seq: Array, decode: str | None) -> Array:
    """Reduce a membrane sequence ``[T, N, *]`` over time.

    * ``'max-mem'``: max over time; the gradient goes to the first maximal step (as PyTorch's
      ``max(dim)``), not split among ties.
    * ``'max-abs-mem'``: ``M`` where ``|M| > |m|`` else ``m`` (``M``/``m`` the max/min over time).
    * ``'mean-mem'``: mean over time.
    * ``'last_mem'`` (or ``'last-mem'``; ``'last-me'``, the spelling of the reference's
      ``NoisyNonSpikingIFNode``): ``V[T-1]``.
    * ``None``: the whole sequence ``[T, N, *]``.
    """
    if decode is None:
        return v_seq
    if decode == "max-mem":
        return _take_at(v_seq, jnp.argmax(v_seq, axis=0))
    if decode == "max-abs-mem":
        big = _take_at(v_seq, jnp.argmax(v_seq, axis=0))
        small = _take_at(v_seq, jnp.argmin(v_seq, axis=0))
        pick_big = jnp.abs(big) > jnp.abs(small)
        return big * pick_big + small * (~pick_big)
    if decode == "mean-mem":
        return jnp.mean(v_seq, axis=0)
    if decode in ("last_mem", "last-mem", "last-me"):
        return v_seq[-1]
    raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")


__all__ = [
    "DECODES", "decode_membrane", "if_charge", "if_step", "integrator_step", "lif_charge",
    "lif_step", "nonspiking_if_step", "nonspiking_lif_charge", "nonspiking_lif_step",
    "plif_charge", "plif_step", "simple_lif_charge", "simple_lif_step", "spiking_step",
]
