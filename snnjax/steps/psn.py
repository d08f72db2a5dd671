"""Parallel Spiking Neurons (PSN, MaskedPSN, SlidingPSN) as pure functions.

A PSN has no membrane carried from step to step: the potential of every step is a learned
linear mix of the *inputs* along time, followed by one Heaviside (bias added, not a threshold
subtracted)::

    H = W X + b,        S = sg(H)

with ``X = x_seq.reshape(T, M)`` (every column one neuron, ``M = prod(shape[1:])``). The
mixing is therefore written as one matrix product over time (``[T, T] x [T, M]``), never as a
loop over ``T``:

* ``PSN``: ``W`` is a full learnable ``[T, T]`` matrix (non-causal), ``b`` is ``[T, 1]``.
* ``MaskedPSN``: ``W_eff = W * F`` with the mask factor ``F = M_k`` for ``lambda >= 1`` and
  ``F = lambda * M_k + (1 - lambda)`` otherwise, ``M_k[t, j] = 1`` for ``0 <= t - j <= k - 1``.
* ``SlidingPSN``: ``H_t = sum_i w_i X_{t-k+1+i} + b`` (``X_j = 0`` for ``j < 0``), a causal
  1-D convolution over time with ``k`` shared weights, computed as a banded (Toeplitz) matrix
  product or as a convolution.

Single-step functions follow the ``step(state, x, params) -> (state, out)`` convention with a
fixed-size queue of the last ``k`` inputs (oldest first, zero-initialised: a zero entry
contributes exactly what a missing entry of the reference's growing list contributes).

The contraction over time uses ``Precision.HIGHEST``: it is short (``T`` or ``k`` terms), so the
op is memory-bound and full float32 accuracy costs nothing, while reduced-precision (TF32/bf16)
products would let multi-step spikes disagree with the single-step path near the threshold.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.steps.common import Array, SpikeFn, cast_out, fire, saturate, state_dtype

_HI = jax.lax.Precision.HIGHEST
SLIDING_METHODS = ("auto", "matmul", "conv")
# "auto" uses the Toeplitz matmul up to this many steps (O(T^2 M) flops on the matrix units,
# still memory-bound), and a causal convolution (O(T k M)) beyond it.
SLIDING_MATMUL_MAX_T = 256


def _compute_dtype(x: Array, *arrays: Any) -> jnp.dtype:
    """float32 or wider: bf16/fp16 inputs are mixed in float32, float64 stays float64."""
    return jnp.result_type(state_dtype(x.dtype), *arrays)


def band_mask(T: int, k: int, dtype: Any = np.float32) -> np.ndarray:
    """``M_k[t, j] = 1`` for ``0 <= t - j <= k - 1`` else 0, shape ``[T, T]`` (a static constant)."""
    d = np.arange(T)[:, None] - np.arange(T)[None, :]
    return ((d >= 0) & (d <= k - 1)).astype(dtype)


def mix_over_time(weight: Array, bias: Array, x_seq: Array) -> Array:
    """``H = W @ X + b`` with ``X = x_seq.reshape(T, -1)``; returns ``H`` with ``x_seq``'s shape.

    ``weight``: ``[T, T]``; ``bias``: anything broadcastable to ``[T, 1]`` (``[T, 1]`` or 0-d).
    Computed in float32 or wider (see :func:`_compute_dtype`).
    """
    dt = _compute_dtype(x_seq, weight, bias)
    # +-inf enters the product as +-max: a zero weight times inf would be NaN
    x2 = saturate(x_seq.reshape(x_seq.shape[0], -1).astype(dt))
    h = jnp.matmul(weight.astype(dt), x2, precision=_HI) + jnp.asarray(bias, dt)
    return h.reshape(x_seq.shape)


def _spikes(h: Array, x: Array, surrogate: SpikeFn) -> Array:
    # the bias is already in h: fire at h >= 0
    return cast_out(fire(h, 0.0, surrogate), x)


# --- PSN ----------------------------------------------------------------------------------------

def psn_multi_step(x_seq: Array, params: dict, *, surrogate: SpikeFn) -> Array:
    """PSN over a whole sequence: ``S = sg(W X + b)``.

    ``x_seq``: ``[T, N, *]`` with ``T == weight.shape[0]``; ``params``: ``{"weight": [T, T],
    "bias": [T, 1]}``. Returns spikes ``[T, N, *]`` in ``x_seq``'s dtype.
    """
    return _spikes(mix_over_time(params["weight"], params["bias"], x_seq), x_seq, surrogate)


# --- MaskedPSN ----------------------------------------------------------------------------------

def masked_psn_weight(weight: Array, lambda_: Any, *, k: int) -> Array:
    """Effective mixing matrix ``W_eff`` of MaskedPSN.

    ``lambda >= 1``: ``W * M_k`` (values above 1 act as 1); otherwise
    ``(lambda * M_k + (1 - lambda) * J) * W`` (entries outside the band scaled by ``1 - lambda``;
    negative ``lambda`` is not clamped). ``lambda_`` may be traced; no gradient flows to it.
    """
    dt = jnp.result_type(weight, jnp.float32)
    lam = jax.lax.stop_gradient(jnp.asarray(lambda_)).astype(dt)
    mask = jnp.asarray(band_mask(weight.shape[0], k), dt)
    factor = jnp.where(lam >= 1, mask, lam * mask + (1 - lam))
    return factor * weight.astype(dt)


def masked_psn_multi_step(x_seq: Array, params: dict, *, k: int, surrogate: SpikeFn) -> Array:
    """MaskedPSN over a whole sequence: ``S = sg(W_eff X + b)``; any ``lambda``.

    ``params``: ``{"weight": [T, T], "bias": [T, 1], "lambda_": 0-d}``. Returns ``[T, N, *]``.
    """
    w_eff = masked_psn_weight(params["weight"], params["lambda_"], k=k)
    return _spikes(mix_over_time(w_eff, params["bias"], x_seq), x_seq, surrogate)


def _push(queue: Array, x: Array) -> Array:
    """Drop the oldest entry, append ``x`` as the newest (fixed length ``k``)."""
    return jnp.concatenate([queue[1:], saturate(x[None].astype(queue.dtype))], axis=0)


def _weighted_queue(coeff: Array, queue: Array) -> Array:
    """``sum_i coeff[i] * queue[i]``: a reduction over the ``k`` queued steps, elementwise in neurons."""
    dt = jnp.result_type(coeff, queue)
    return jnp.tensordot(coeff.astype(dt), queue.astype(dt), axes=1, precision=_HI)


def masked_psn_step(state: dict, x: Array, params: dict, *, k: int,
                    surrogate: SpikeFn) -> tuple[dict, Array]:
    """One step of a fully annealed MaskedPSN (row ``t = time_step`` of the multi-step product).

    ``h = sum_{i<k} W_eff[t, t-k+1+i] * q_i + b_t`` over the queue ``q`` of the last ``k``
    inputs (``q_{k-1} = x``), ``s = sg(h)``; ``time_step <- t + 1``.

    Valid only for ``lambda >= 1`` and ``time_step < T`` (the module raises otherwise when the
    values are concrete); under tracing an invalid step returns NaN.
    """
    weight, bias, lam = params["weight"], params["bias"], params["lambda_"]
    T = weight.shape[0]
    t = jnp.asarray(state["time_step"])
    queue = _push(state["queue"], x)
    w_eff = masked_psn_weight(weight, lam, k=k)
    cols = t - (k - 1) + jnp.arange(k)
    row = w_eff[jnp.clip(t, 0, T - 1)]
    coeff = jnp.where(cols >= 0, row[jnp.clip(cols, 0, T - 1)], 0)
    b = jnp.reshape(bias, (T,))[jnp.clip(t, 0, T - 1)]
    h = _weighted_queue(coeff, queue)
    h = h + b.astype(h.dtype)
    # h stays finite (clipped indices) so the masked-out branch cannot leak NaN into gradients
    valid = (t >= 0) & (t < T) & (jnp.asarray(lam) >= 1)
    spike = jnp.where(valid, fire(h, 0.0, surrogate), jnp.nan)
    return {"time_step": t + 1, "queue": queue}, cast_out(spike, x)


# --- SlidingPSN ---------------------------------------------------------------------------------

def exp_init_weight(k: int) -> np.ndarray:
    """``w_i = 2^-(k-1-i)``: 1 on the current input, halving towards the past (float32 ``[k]``)."""
    return (2.0 ** -np.arange(k - 1, -1, -1)).astype(np.float32)


def sliding_psn_gemm_weight(weight: Array, T: int) -> Array:
    """Toeplitz matrix ``A[t, j] = w[k-1-(t-j)]`` for ``0 <= t - j <= k - 1`` else 0, ``[T, T]``.

    Built by a gather from ``weight`` (differentiable). Works for any ``T >= 1``, also ``T < k``.
    """
    k = weight.shape[0]
    d = np.arange(T)[:, None] - np.arange(T)[None, :]
    valid = (d >= 0) & (d <= k - 1)
    idx = np.where(valid, k - 1 - d, 0)
    return jnp.where(valid, weight[idx], jnp.zeros((), weight.dtype))


def sliding_psn_potential(x_seq: Array, weight: Array, bias: Array, *,
                          method: str = "auto") -> Array:
    """``H_t = sum_i w_i X_{t-k+1+i} + b`` over ``x_seq[T, N, *]``; returns ``H`` (same shape).

    ``method``: ``'matmul'`` (Toeplitz ``[T, T]`` product), ``'conv'`` (causal convolution,
    ``O(T k)``), ``'auto'`` (matmul for ``T <= 256``, else conv). Static.
    """
    if method not in SLIDING_METHODS:
        raise ValueError(f"method must be one of {SLIDING_METHODS}, got {method!r}")
    T = x_seq.shape[0]
    if method == "auto":
        method = "matmul" if T <= SLIDING_MATMUL_MAX_T else "conv"
    if method == "matmul":
        return mix_over_time(sliding_psn_gemm_weight(weight, T), bias, x_seq)
    k = weight.shape[0]
    dt = _compute_dtype(x_seq, weight, bias)
    # time as the spatial axis, neurons as the batch: [T, M, 1] with left (causal) padding k - 1
    x3 = saturate(x_seq.reshape(T, -1, 1).astype(dt))
    h = jax.lax.conv_general_dilated(
        x3, weight.astype(dt).reshape(k, 1, 1), window_strides=(1,), padding=[(k - 1, 0)],
        dimension_numbers=("HNC", "HIO", "HNC"), precision=_HI)
    return (h[..., 0] + jnp.asarray(bias, dt)).reshape(x_seq.shape)


def sliding_psn_multi_step(x_seq: Array, params: dict, *, surrogate: SpikeFn,
                           method: str = "auto") -> Array:
    """SlidingPSN over a sequence of any length: ``S = sg(H)`` with ``H`` of
    :func:`sliding_psn_potential`. ``params``: ``{"weight": [k], "bias": 0-d}``."""
    h = sliding_psn_potential(x_seq, params["weight"], params["bias"], method=method)
    return _spikes(h, x_seq, surrogate)


def sliding_psn_step(state: dict, x: Array, params: dict, *,
                     surrogate: SpikeFn) -> tuple[dict, Array]:
    """One SlidingPSN step: push ``x``, ``h = sum_i w_i q_i + b``, ``s = sg(h)``.

    ``state["queue"]``: the last ``k`` inputs ``[k, N, *]`` (oldest first, zeros before the
    first ``k`` steps). No step limit: the window slides forever.
    """
    queue = _push(state["queue"], x)
    h = _weighted_queue(params["weight"], queue)
    h = h + jnp.asarray(params["bias"], h.dtype)
    return {"queue": queue}, _spikes(h, x, surrogate)
