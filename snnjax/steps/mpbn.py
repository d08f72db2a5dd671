"""MPBN LIF: LIF with batch normalisation of the membrane potential inside the step.

Papers: *Membrane Potential Batch Normalization for Spiking Neural Networks* (2023) and
*Threshold Modulation for Online Test-Time Adaptation of Spiking Neural Networks* (2025).

The step is not elementwise: the batch statistics reduce over every axis but the channel axis 1
(``[N, C]``, ``[N, C, L]`` or ``[N, C, H, W]``), so MPBN always runs on the ``lax.scan`` engine.

State: ``{"v": V[t-1] [N, C, *], "stats": {...}}``. ``stats`` holds the statistics that advance
per time step and are committed to the module by its wrapper (never reset with ``v``):

* BN active (``bn=True``): ``running_mean [C]``, ``running_var [C]``, ``num_batches_tracked []``;
* folded (``folded=True``): ``mu [C]``, ``sigma2 [C]``, ``bn_momentum []``.

Per step (``c`` the channel, reductions over the batch and spatial axes, ``P(a)`` = ``a``
reshaped to ``[1, C, 1, ...]``):

1. charge ``H = V + (r - V) / tau + X`` (``decay_input=False``; ``V + (X - (V - r)) / tau``
   otherwise), ``r = V_r`` or 0 with soft reset;
2. BN (``bn``): training ``H = P(w) (H - mean_B) / sqrt(var_B + eps) + P(b)`` with the biased
   batch variance, then ``rm = (1 - m) rm + m mean_B``, ``rv = (1 - m) rv + m var_B_unbiased``,
   ``num_batches_tracked += 1`` (``m`` = ``vbn_momentum``); eval uses ``rm``, ``rv``;
3. test-time statistics (``folded`` and training; skipped for 2-D ``H`` with ``N = 1``):
   ``mu_b = mean(H)``, ``s2_b = var_unbiased(H)`` (no gradient); with ``running_stats``
   ``mu = (1 - p) mu + p mu_b``, ``sigma2`` likewise, ``p = max(p * decay, p_min)``; otherwise
   ``mu = mu_b``, ``sigma2 = s2_b``;
4. threshold ``vth = P((theta - beta) sqrt(sigma2 + eps) / gamma + mu)`` (folded),
   ``P(exp(a))`` (``learnable_vth``) or ``theta``;
5. ``D = H - vth``, ``S = Theta_sg(D)``;
6. ``normalize_residual``: where ``D <= 0``, ``H = P(gamma) (H - P(mu)) / P(sqrt(sigma2 + eps))
   + P(beta)``;
7. reset ``V = R(H, S)``; the soft reset subtracts ``theta`` (the ``v_threshold`` param, per
   channel after folding a learnable threshold), not ``vth``.

The statistics never carry gradient (they are buffers in the reference).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from snnjax.steps.common import Array, SpikeFn, cast_out, fire_for_state, reset, state_dtype
from snnjax.steps.integrate_and_fire import lif_charge

Charge = Callable[[Array, Array, dict], Array]
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")
FOLD_STATS = ("mu", "sigma2", "bn_momentum")


def per_channel(a: Array, ndim: int) -> Array:
    """``[C]`` -> ``[1, C, 1, ...]`` for an ``ndim``-D ``[N, C, *]`` tensor; scalars unchanged."""
    a = jnp.asarray(a)
    if a.ndim == 0:
        return a
    return a.reshape((1, a.shape[0]) + (1,) * (ndim - 2))


def reduce_axes(ndim: int) -> tuple[int, ...]:
    """Every axis but the channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def _shard_axes(h: Array) -> tuple:
    """The manual mesh axes ``h`` varies over: inside ``shard_map`` each shard holds a block of
    the batch, and the statistics are those of the whole batch."""
    try:
        mat = jax.typeof(h).manual_axis_type
    except (TypeError, AttributeError):
        return ()
    return tuple(sorted(mat.varying)) if mat is not None else ()


def batch_moments(h: Array) -> tuple[Array, Array, Array]:
    """Per-channel ``(mean, biased var, unbiased var)`` of ``h[N, C, *]`` (over every shard of
    the batch inside ``shard_map``: ``psum`` over the axes ``h`` varies over)."""
    axes = reduce_axes(h.ndim)
    n = 1
    for a in axes:
        n *= h.shape[a]
    shards = _shard_axes(h)
    if shards:
        n = n * jax.lax.psum(1, shards)
        mean = jax.lax.psum(jnp.sum(h, axis=axes), shards) / n
        var = jax.lax.psum(jnp.sum(jnp.square(h - per_channel(mean, h.ndim)), axis=axes),
                           shards) / n
        return mean, var, var * (n / (n - 1))
    mean = jnp.mean(h, axis=axes)
    var = jnp.mean(jnp.square(h - per_channel(mean, h.ndim)), axis=axes)
    unbiased = var * (n / (n - 1)) if n > 1 else jnp.full_like(var, jnp.nan)
    return mean, var, unbiased


def normalise(h: Array, mean: Array, var: Array, weight: Array, bias: Array, eps: Array) -> Array:
    """``P(weight) (h - P(mean)) / P(sqrt(var + eps)) + P(bias)``."""
    nd = h.ndim
    return ((h - per_channel(mean, nd)) / per_channel(jnp.sqrt(var + eps), nd)
            * per_channel(weight, nd) + per_channel(bias, nd))


def mpbn_step(state: dict, x: Array, params: dict, *, charge: Charge, surrogate: SpikeFn,
              soft_reset: bool, detach_reset: bool, bn: bool, folded: bool, learnable_vth: bool,
              normalize_residual: bool, running_stats: bool,
              training: bool) -> tuple[dict, Array]:
    """One MPBN step: ``({"v", "stats"}, X[t] [N, C, *]) -> ({"v", "stats"}, S[t])``.

    ``charge(V, X, params) -> H`` is the neuron's charge equation (LIF for MPBNLIFNode).
    ``params``: ``v_threshold``, ``v_reset`` and the charge's own; with ``bn``: ``vbn_weight``, ``vbn_bias``
    ``[C]``, ``vbn_eps``, ``vbn_momentum``; with ``learnable_vth``: ``a [C]``; with ``folded``:
    ``gamma``, ``beta`` ``[C]``, ``eps``, ``bn_decay_momentum``, ``bn_min_momentum``.
    Static flags select the path (see the module docstring); ``training`` chooses batch vs
    running statistics and whether statistics advance.
    """
    v = state["v"]
    stats = dict(state["stats"])
    sdt = state_dtype(x.dtype)
    nd = x.ndim
    frozen = {k: jax.lax.stop_gradient(jnp.asarray(a)) for k, a in stats.items()}

    h = charge(v, x.astype(sdt), params)

    if bn:
        if training:
            mean, var, unbiased = batch_moments(h)
            h = normalise(h, mean, var, params["vbn_weight"], params["vbn_bias"], params["vbn_eps"])
            m = params["vbn_momentum"]
            rm, rv = frozen["running_mean"], frozen["running_var"]
            stats["running_mean"] = ((1.0 - m) * rm + m * jax.lax.stop_gradient(mean)).astype(rm.dtype)
            stats["running_var"] = ((1.0 - m) * rv
                                    + m * jax.lax.stop_gradient(unbiased)).astype(rv.dtype)
            stats["num_batches_tracked"] = frozen["num_batches_tracked"] + 1
        else:
            h = normalise(h, frozen["running_mean"], frozen["running_var"], params["vbn_weight"],
                          params["vbn_bias"], params["vbn_eps"])

    if folded:
        mu, sigma2 = frozen["mu"], frozen["sigma2"]
        if training and not (nd == 2 and x.shape[0] == 1):
            mean, _, unbiased = batch_moments(jax.lax.stop_gradient(h))
            if running_stats:
                p = frozen["bn_momentum"]
                mu = (mu * (1.0 - p) + mean * p).astype(mu.dtype)
                sigma2 = (sigma2 * (1.0 - p) + unbiased * p).astype(sigma2.dtype)
                stats["bn_momentum"] = jnp.maximum(p * params["bn_decay_momentum"],
                                                   params["bn_min_momentum"]).astype(p.dtype)
            else:
                mu, sigma2 = mean.astype(mu.dtype), unbiased.astype(sigma2.dtype)
            stats["mu"], stats["sigma2"] = mu, sigma2
        vth = per_channel((params["v_threshold"] - params["beta"]) * jnp.sqrt(sigma2 + params["eps"])
                          / params["gamma"] + mu, nd)
    elif learnable_vth:
        vth = per_channel(jnp.exp(params["a"]), nd)
    else:
        vth = params["v_threshold"]

    for_state, spike = fire_for_state(h, vth, surrogate)

    if normalize_residual:
        d = h - vth
        h = jnp.where(d <= 0, normalise(h, mu, sigma2, params["gamma"], params["beta"],
                                        params["eps"]), h)

    v_next = reset(h, for_state, per_channel(params["v_threshold"], nd), params["v_reset"],
                   soft_reset=soft_reset, detach_reset=detach_reset)
    return {"v": v_next.astype(v.dtype), "stats": stats}, cast_out(spike, x)


def mpbn_lif_step(state: dict, x: Array, params: dict, *, decay_input: bool = False,
                  **static: Any) -> tuple[dict, Array]:
    """:func:`mpbn_step` with the LIF charge (``params`` adds ``tau``); ``static`` as there."""
    charge = functools.partial(lif_charge, decay_input=decay_input,
                               soft_reset=static["soft_reset"])
    return mpbn_step(state, x, params, charge=charge, **static)


__all__ = ["BN_STATS", "FOLD_STATS", "batch_moments", "mpbn_lif_step", "mpbn_step", "normalise",
           "per_channel", "reduce_axes"]
