"""DSR neurons (Differentiation on Spike Representation, CVPR 2022) as whole-sequence functions.

The forward is an ordinary spiking simulation from a zero membrane; the backward ignores it and
differentiates a closed-form *rate* of the input instead, so the pair is one
:func:`jax.custom_vjp` over the whole sequence (the per-step functions below only define the
forward recurrence).

Notation: ``X`` input ``[T, N, *]``, ``theta`` the (already clamped) threshold, ``alpha`` the
firing fraction, ``G`` the upstream cotangent ``[T, N, *]``.

**DSR-IF** forward: ``m[t] = m[t-1] + X[t]``, ``z = 1[m >= alpha*theta]``, ``y[t] = theta*z``,
``m -= y[t]``. Backward with ``r = mean_t X``, ``Gbar = T * mean_t G``::

    dL/dX[t]  = Gbar / T * 1[0 <= r <= theta]                 (same for every t)
    dL/dtheta = s * sum(Gbar * 1[r > theta])                  (scalar, s = grad scaling)

**DSR-LIF** forward with ``b = exp(-dt/tau)``: ``m[t] = b*m[t-1] + (1-b)*X[t]``,
``z = 1[m >= alpha*theta]``, ``m -= theta*z``, ``y[t] = theta*z/dt``. Backward with the
exponentially weighted rate ``WR(D) = sum_i w_i D_i / sum_i w_i``,
``w_i = exp(-(T - i) dt / tau)`` (``i = 1..T``), ``r = WR(X)``, ``Gbar = T * WR(G)`` and
``B = theta * tau / dt``::

    dL/dX[t]  = Gbar / (tau * T) * 1[0 < r < B]
    dL/dtheta = dt * s * sum(Gbar * 1[r > B])

No gradient reaches ``alpha``, ``tau``, ``dt`` or the scaling. ``T`` is static and must equal the
sequence length.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.steps.common import Array, cast_out, saturate, state_dtype
from snnjax.surrogate import heaviside


def clamp_threshold(v_threshold: Any, lower_bound: Any) -> Array:
    """``max(theta, lb)`` with the gradient passed to ``theta`` wherever ``theta >= lb``.

    (``jnp.maximum`` would halve the gradient at equality; the reference passes it whole.)
    """
    v_threshold = jnp.asarray(v_threshold)
    return jnp.where(v_threshold >= lower_bound, v_threshold,
                     jnp.asarray(lower_bound, v_threshold.dtype))


def _lif_decay(tau: Any, delta_t: Any) -> tuple[Any, Any]:
    """``(b, 1 - b)`` with ``b = exp(-dt/tau)``; in double precision when both are Python numbers
    (rounded once where they meet the membrane, as the reference does)."""
    if isinstance(tau, numbers.Real) and isinstance(delta_t, numbers.Real):
        b = math.exp(-float(delta_t) / float(tau))
        return b, 1.0 - b
    b = jnp.exp(-jnp.asarray(delta_t) / jnp.asarray(tau))
    return b, 1.0 - b


def dsr_if_step(state: dict, x: Array, params: dict) -> tuple[dict, Array]:
    """One forward step of DSR-IF: ``({"m"}, X[t]) -> ({"m"}, theta * z[t])`` (no gradient rule)."""
    theta = params["v_threshold"]
    m = state["m"] + x.astype(state["m"].dtype)
    y = heaviside(m - params["alpha"] * theta) * theta   # NaN stays NaN (the policy)
    return {"m": saturate(m - y)}, y


def dsr_lif_step(state: dict, x: Array, params: dict) -> tuple[dict, Array]:
    """One forward step of DSR-LIF: ``({"m"}, X[t]) -> ({"m"}, theta * z[t] / dt)``.

    ``params`` holds ``decay`` = ``exp(-dt/tau)`` and ``one_minus_decay`` (precomputed by
    :func:`dsr_lif_sequence`) besides ``v_threshold``, ``alpha`` and ``delta_t``.
    """
    theta = params["v_threshold"]
    b, one_minus_b = params["decay"], params["one_minus_decay"]
    m = b * state["m"] + one_minus_b * x.astype(state["m"].dtype)
    spike = heaviside(m - params["alpha"] * theta) * theta
    return {"m": saturate(m - spike)}, spike / params["delta_t"]


def _forward(step, x_seq: Array, params: dict) -> Array:
    m0 = jnp.zeros(x_seq.shape[1:], state_dtype(x_seq.dtype))
    _, y = jax.lax.scan(lambda s, x: step(s, x, params), {"m": m0}, x_seq)
    return cast_out(y, x_seq)


def _check_length(x_seq: Array, T: int, owner: str) -> None:
    if x_seq.ndim < 2:
        raise ValueError(f"{owner}: input must be time-first [T, N, *] with at least 2 "
                         f"dimensions, got shape {tuple(x_seq.shape)}")
    if x_seq.shape[0] != T:
        raise ValueError(f"{owner}: the sequence length ({x_seq.shape[0]}) must equal the "
                         f"constructor argument T={T} (the rate-based backward assumes it)")


def _zeros_like_params(params: dict) -> dict:
    return jax.tree_util.tree_map(jnp.zeros_like, params)


# --- DSR-IF -----------------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dsr_if(x_seq: Array, params: dict, T: int) -> Array:
    return _forward(dsr_if_step, x_seq, params)


def _dsr_if_fwd(x_seq, params, T):
    return _forward(dsr_if_step, x_seq, params), (x_seq, params)


def _dsr_if_bwd(T, res, g):
    x_seq, params = res
    theta = params["v_threshold"]
    wdtype = state_dtype(x_seq.dtype)
    rate = jnp.mean(x_seq.astype(wdtype), axis=0)
    g_bar = jnp.mean(g.astype(wdtype), axis=0) * T
    # input mask inclusive at both ends, threshold mask strict (as the reference)
    gx = jnp.where((rate < 0) | (rate > theta), 0.0, g_bar)
    gx = jnp.broadcast_to(gx / T, x_seq.shape).astype(x_seq.dtype)
    g_theta = jnp.sum(jnp.where(rate > theta, g_bar, 0.0)) * params["v_threshold_grad_scaling"]
    gp = _zeros_like_params(params)
    gp["v_threshold"] = jnp.asarray(g_theta, jnp.result_type(theta)).reshape(jnp.shape(theta))
    return gx, gp


_dsr_if.defvjp(_dsr_if_fwd, _dsr_if_bwd)


def dsr_if_sequence(x_seq: Array, params: dict, *, T: int) -> Array:
    """DSR-IF over a whole sequence ``x_seq[T, N, *] -> y[T, N, *]`` (values ``{0, theta}``).

    ``params``: ``v_threshold`` (0-d, learnable), ``alpha``, ``v_threshold_lower_bound``,
    ``v_threshold_grad_scaling``. The threshold is clamped to the lower bound first. Output in
    ``x_seq``'s dtype; gradients as in the module docstring (rate-based ``custom_vjp``).
    """
    x_seq = jnp.asarray(x_seq)
    _check_length(x_seq, T, "DSRIFNode")
    p = {"v_threshold": clamp_threshold(params["v_threshold"], params["v_threshold_lower_bound"]),
         "alpha": params["alpha"],
         "v_threshold_grad_scaling": params["v_threshold_grad_scaling"]}
    return _dsr_if(x_seq, p, T)


# --- DSR-LIF ----------------------------------------------------------------------------------

def _rate_weights(T: int, tau: Any, delta_t: Any) -> Array:
    """``w_i = exp(-(T - i) dt / tau)``, ``i = 1..T``, rounded to float32 like the reference."""
    if isinstance(tau, numbers.Real) and isinstance(delta_t, numbers.Real):
        i = np.arange(1, T + 1, dtype=np.float64)
        w = np.exp(-1.0 / float(tau) * (float(delta_t) * T - i * float(delta_t)))
        return jnp.asarray(w.astype(np.float32))
    i = jnp.arange(1, T + 1, dtype=jnp.float32)
    return jnp.exp(-1.0 / tau * (delta_t * T - i * delta_t)).astype(jnp.float32)


def _weighted_rate(d: Array, w: Array) -> Array:
    """``sum_i w_i d_i / sum_i w_i`` over the leading (time) axis."""
    w = w.astype(jnp.promote_types(w.dtype, d.dtype))
    return jnp.tensordot(w, d, axes=(0, 0)) / jnp.sum(w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _dsr_lif(x_seq: Array, params: dict, T: int) -> Array:
    return _forward(dsr_lif_step, x_seq, params)


def _dsr_lif_fwd(x_seq, params, T):
    return _forward(dsr_lif_step, x_seq, params), (x_seq, params)


def _dsr_lif_bwd(T, res, g):
    x_seq, params = res
    theta, tau, dt = params["v_threshold"], params["tau"], params["delta_t"]
    wdtype = state_dtype(x_seq.dtype)
    w = params["rate_weights"]
    rate = _weighted_rate(x_seq.astype(wdtype), w)
    g_bar = _weighted_rate(g.astype(wdtype), w) * T
    bound = theta / dt * tau
    # both masks strict
    gx = jnp.where((rate > 0) & (rate < bound), g_bar / tau, 0.0)
    gx = jnp.broadcast_to(gx / T, x_seq.shape).astype(x_seq.dtype)
    g_theta = (jnp.sum(jnp.where(rate > bound, g_bar, 0.0)) * dt
               * params["v_threshold_grad_scaling"])
    gp = _zeros_like_params(params)
    gp["v_threshold"] = jnp.asarray(g_theta, jnp.result_type(theta)).reshape(jnp.shape(theta))
    return gx, gp


_dsr_lif.defvjp(_dsr_lif_fwd, _dsr_lif_bwd)


def dsr_lif_sequence(x_seq: Array, params: dict, *, T: int) -> Array:
    """DSR-LIF over a whole sequence ``x_seq[T, N, *] -> y[T, N, *]`` (values ``{0, theta/dt}``).

    ``params``: ``v_threshold`` (0-d, learnable), ``tau``, ``delta_t``, ``alpha``,
    ``v_threshold_lower_bound``, ``v_threshold_grad_scaling``. Output in ``x_seq``'s dtype;
    gradients as in the module docstring (weighted-rate ``custom_vjp``).
    """
    x_seq = jnp.asarray(x_seq)
    _check_length(x_seq, T, "DSRLIFNode")
    tau, delta_t = params["tau"], params["delta_t"]
    # decay and rate weights are computed here, where tau / delta_t may still be Python numbers
    # (double precision, rounded once like the reference's Python-float scalars)
    decay, one_minus_decay = _lif_decay(tau, delta_t)
    p = {"v_threshold": clamp_threshold(params["v_threshold"], params["v_threshold_lower_bound"]),
         "alpha": params["alpha"], "tau": tau, "delta_t": delta_t, "decay": decay,
         "one_minus_decay": one_minus_decay, "rate_weights": _rate_weights(T, tau, delta_t),
         "v_threshold_grad_scaling": params["v_threshold_grad_scaling"]}
    return _dsr_lif(x_seq, p, T)


__all__ = ["clamp_threshold", "dsr_if_sequence", "dsr_if_step", "dsr_lif_sequence",
           "dsr_lif_step"]
