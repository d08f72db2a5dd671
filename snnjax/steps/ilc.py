"""Population neurons with an inter-layer connection (ILC) and/or exploration noise, as pure steps.

SpikingJelly's ``neuron.inter_layer_connection`` (``ILC*Node``) and the spiking classes of
``neuron.noisy`` (``Noisy*Node``) share one step, :func:`population_step`:

* ILC: the spikes of step ``t`` are fed back through a learnable block-diagonal linear map
  (:func:`ilc_connection`) into the input of step ``t + 1``. The feedback travels in the state
  (``state["feedback"]``, zeros before the first step), so the caller's input is never modified.
* Noise (training only): ``X <- X + sigma_v * n_v`` before the charge and ``out = S + sigma_s * n_s``
  after the reset, which uses the clean spike. In the noisy ILC neuron the feedback is computed
  from the noisy output.

State dict keys: ``v`` (membrane), ``c`` (synaptic current, CUBA charge only), ``feedback``
(ILC only). Shapes: every state leaf and ``x`` are ``[N, *, A * P]`` (the last axis holds
``act_dim`` groups of ``dec_pop_dim`` neurons for ILC). No Flax imports.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from snnjax.steps.common import Array, SpikeFn, cast_out, fire_and_reset, state_dtype
from snnjax.steps.lif_variants import cuba_charge

StateCharge = Callable[[dict, Array, dict], dict]


# --- the inter-layer connection ---------------------------------------------------------------

def ilc_connection(s: Array, weight: Array, bias: Array, dec_pop_dim: int) -> Array:
    r"""Grouped linear map of SpikingJelly's ``Conv1d(A, A*P, kernel_size=P, groups=A)``.

    With ``s`` viewed as ``[..., A, P]``:
    ``out[..., g*P + j] = bias[g*P + j] + sum_k weight[g*P + j, 0, k] * s[..., g*P + k]``,
    i.e. ``A`` independent ``P x P`` matrices plus a bias (added even when nothing spiked).

    Shapes: ``s`` ``[..., A*P]``, ``weight`` ``[A*P, 1, P]``, ``bias`` ``[A*P]``; returns
    ``[..., A*P]``.
    """
    ap = s.shape[-1]
    p = int(dec_pop_dim)
    a = ap // p
    w = jnp.reshape(weight, (a, p, p))  # [group, out j, in k]
    sg = jnp.reshape(s, s.shape[:-1] + (a, p))
    # full precision: these are small matrices and accelerators default to reduced precision
    out = jnp.einsum("...gk,gjk->...gj", sg, w, precision=jax.lax.Precision.HIGHEST)
    out = out + jnp.reshape(bias, (a, p))
    return jnp.reshape(out, s.shape)


# --- charge equations on the whole state: {"v": V[t-1], ...}, X[t] -> {"v": H[t], ...} --------

def ilc_if_charge(state: dict, x: Array, params: dict) -> dict:
    """``H = V + X``."""
    return {**state, "v": state["v"] + x}


def ilc_lif_charge(state: dict, x: Array, params: dict) -> dict:
    """``H = v_decay * V + X`` (decay towards 0 whatever ``v_reset`` is, as the reference)."""
    return {**state, "v": params["v_decay"] * state["v"] + x}


# --- noise ------------------------------------------------------------------------------------

def noise_term(sigma: Any, noise: Array) -> Array:
    """``sigma * noise`` computed in the noise's dtype.

    The reference multiplies its float32 noise by a Python float, so the product is rounded to
    float32 even when the neuron runs in float64; casting ``sigma`` to the noise dtype reproduces
    that (and keeps bf16/fp32 noise cheap).
    """
    noise = jnp.asarray(noise)
    return jnp.asarray(sigma).astype(noise.dtype) * noise


# --- the step ---------------------------------------------------------------------------------

def population_step(state: dict, x: Any, params: dict, *, charge: StateCharge, surrogate: SpikeFn,
                    soft_reset: bool, dec_pop_dim: int | None = None,
                    noisy: bool = False) -> tuple[dict, Array]:
    r"""One step of an ILC and/or noisy spiking population.

    ``x`` is ``X[t]`` or, with ``noisy=True``, the tuple ``(X[t], n_v[t], n_s[t])`` (noise arrays
    broadcastable to ``X[t]``). With ``F`` = ``state["feedback"]`` (ILC only):

    .. math::
        \tilde X = X + F \;(+\ \sigma_v n_v), \quad H = \mathrm{charge}(V, \tilde X), \quad
        S = \Theta_{sg}(H - \theta), \quad V' = R(H, S), \quad
        \mathrm{out} = S \;(+\ \sigma_s n_s), \quad F' = \mathrm{conn}(\mathrm{out}).

    ``R`` is the hard reset ``S V_r + (1 - S) H`` or, with ``soft_reset``, ``H - S theta``; the
    reset is never detached. ``params``: ``v_threshold``, ``v_reset``, the charge's constants,
    ``conn_weight`` / ``conn_bias`` (ILC), ``sigma_v`` / ``sigma_s`` (noisy).
    Returns ``(state', out)`` with ``out`` in ``X``'s dtype.
    """
    if noisy:
        x, n_v, n_s = x
    dtype = state["v"].dtype
    xt = x.astype(state_dtype(x.dtype))
    ilc = dec_pop_dim is not None
    if ilc:
        xt = xt + state["feedback"]
    if noisy:
        xt = xt + noise_term(params["sigma_v"], n_v)
    charged = charge(state, xt, params)
    v, spike = fire_and_reset(charged["v"], params, surrogate=surrogate, soft_reset=soft_reset,
                              detach_reset=False)
    out = spike + noise_term(params["sigma_s"], n_s) if noisy else spike
    new_state = {**charged, "v": v}
    if ilc:
        new_state["feedback"] = ilc_connection(out, params["conn_weight"], params["conn_bias"],
                                               dec_pop_dim)
    new_state = {k: a.astype(dtype) for k, a in new_state.items()}
    return new_state, cast_out(out, x)


__all__ = ["cuba_charge", "ilc_connection", "ilc_if_charge", "ilc_lif_charge", "noise_term",
           "population_step"]
