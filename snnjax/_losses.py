"""Losses and spike helpers, re-exported by :mod:`snnjax.functional`.

These follow SpikingJelly's names, mathematics and axis conventions, which are not always
snnjax's time-first layout: :func:`first_spike_index` has time on the *last* axis (as the
reference); :func:`temporal_efficient_training_cross_entropy` takes ``x_seq[T, N, C, *]``
(time first, classes on axis 2).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def first_spike_index(spikes: Any) -> Array:
    """Where each neuron fires for the first time; time on the **last** axis (as the reference).

    ``index[..., t] = (spikes[..., t] != 0) and (sum_{u <= t} spikes[..., u] == 1)``.

    Args:
      spikes: ``[*, T]`` binary spikes.

    Returns:
      ``[*, T]`` bool, ``True`` at the first spike of each neuron (all ``False`` if it never
      fires).
    """
    spikes = jnp.asarray(spikes)
    if spikes.ndim < 1:
        raise ValueError(f"first_spike_index: spikes must be [*, T] with T on the last axis, got "
                         f"a 0-d value")
    return (spikes != 0) & (jnp.cumsum(spikes, axis=-1) == 1)


def temporal_efficient_training_cross_entropy(x_seq: Any, target: Any, *,
                                              ignore_index: int = -100) -> Array:
    """TET loss (Deng et al., 2022): the cross entropy of every time step's output, averaged.

    ``L = (1 / (T M)) sum_t sum_m -log softmax(x_seq[t, m])[target[m]]`` over the ``M`` valid
    positions ``m = (n, *)`` (``target != ignore_index``), i.e. PyTorch's mean cross entropy of
    ``x_seq`` (classes on axis 2) against ``target`` repeated over time, as the reference.

    Args:
      x_seq: ``[T, N, C, *]`` logits (time first, classes on axis 2).
      target: ``[N, *]`` integer class indices in ``[0, C)`` (or ``ignore_index``).
      ignore_index: a target value that is left out of the mean (PyTorch's default ``-100``).

    Returns:
      scalar loss (NaN if every target is ignored, as PyTorch).
    """
    x_seq = jnp.asarray(x_seq)
    target = jnp.asarray(target)
    if x_seq.ndim < 3:
        raise ValueError(f"temporal_efficient_training_cross_entropy: x_seq must be [T, N, C, *], "
                         f"got shape {x_seq.shape}")
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"temporal_efficient_training_cross_entropy: target must hold integer "
                        f"class indices, got dtype {target.dtype}")
    want = (x_seq.shape[1],) + x_seq.shape[3:]
    if target.shape != want:
        raise ValueError(f"temporal_efficient_training_cross_entropy: target must have shape "
                         f"[N, *] = {want} for x_seq of shape {x_seq.shape}, got {target.shape}")
    logp = jax.nn.log_softmax(x_seq.astype(jnp.promote_types(x_seq.dtype, jnp.float32)), axis=2)
    valid = target != ignore_index
    index = jnp.where(valid, target, 0)[None, :, None]
    index = jnp.broadcast_to(index, (x_seq.shape[0], x_seq.shape[1], 1) + x_seq.shape[3:])
    nll = -jnp.take_along_axis(logp, index, axis=2).squeeze(2)   # [T, N, *]
    mask = jnp.broadcast_to(valid[None], nll.shape)
    return jnp.sum(jnp.where(mask, nll, 0.0)) / jnp.sum(mask)


def firing_rate_mse_loss(spike_seq: Any, target: Any, num_classes: int | None = None) -> Array:
    """Mean squared error between the firing rate and a target rate (SpikingJelly tutorials'
    ``F.mse_loss(out_spikes.mean(0), F.one_hot(label, C))``).

    ``rate[n, c] = (1/T) sum_t S[t, n, c]`` (the spike count over ``T``);
    ``L = mean_{n, c} (rate[n, c] - y[n, c])^2`` with ``y = one_hot(target)`` for integer targets.

    Args:
      spike_seq: ``[T, N, C]`` output spikes (time first).
      target: ``[N]`` integer labels (one-hot encoded with ``C = spike_seq.shape[-1]`` classes,
        or ``num_classes``) or ``[N, C]`` target rates.
      num_classes: optional check of ``C`` for integer targets.

    Returns:
      scalar loss.
    """
    spike_seq = jnp.asarray(spike_seq)
    target = jnp.asarray(target)
    if spike_seq.ndim < 2:
        raise ValueError(f"firing_rate_mse_loss: spike_seq must be [T, N, *], got shape "
                         f"{spike_seq.shape}")
    rate = spike_seq.astype(jnp.promote_types(spike_seq.dtype, jnp.float32)).mean(0)
    if jnp.issubdtype(target.dtype, jnp.integer):
        c = rate.shape[-1]
        if num_classes is not None and num_classes != c:
            raise ValueError(f"firing_rate_mse_loss: num_classes={num_classes} but spike_seq has "
                             f"{c} outputs on the last axis")
        if target.shape != rate.shape[:-1]:
            raise ValueError(f"firing_rate_mse_loss: integer target must have shape "
                             f"{rate.shape[:-1]}, got {target.shape}")
        target = jax.nn.one_hot(target, c, dtype=rate.dtype)
    elif target.shape != rate.shape:
        raise ValueError(f"firing_rate_mse_loss: target rates must have shape {rate.shape}, got "
                         f"{target.shape}")
    return jnp.mean(jnp.square(rate - target))


_KERNELS = ("linear", "polynomial", "sigmoid", "gaussian")


def kernel_dot_product(x: Any, y: Any, kernel: str = "linear", *args: float) -> Array:
    """Pairwise kernel ``K[i, j] = k(x_i, y_j)`` of the rows of ``x[N, D]`` and ``y[M, D]``.

    ``'linear'``: ``x_i . y_j``; ``'polynomial'`` (``args = (d,)``): ``(x_i . y_j)^d``;
    ``'sigmoid'`` (``args = (alpha,)``): ``sigmoid(alpha x_i . y_j)``; ``'gaussian'``
    (``args = (sigma,)``, ``sigma > 0``): ``exp(-|x_i - y_j|^2 / (2 sigma^2))``.

    Args:
      x: ``[N, D]``.
      y: ``[M, D]`` (the reference needs ``M = N`` for the Gaussian kernel; here any ``M``).
      kernel: ``'linear'``, ``'polynomial'``, ``'sigmoid'`` or ``'gaussian'`` (default
        ``'linear'``).
      *args: the kernel's parameter (``d``, ``alpha`` or ``sigma``), required but for
        ``'linear'``.

    Returns:
      ``[N, M]``.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if kernel not in _KERNELS:
        raise ValueError(f"kernel_dot_product: kernel must be one of {_KERNELS}, got {kernel!r}")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"kernel_dot_product: x and y must be [N, D] and [M, D], got {x.shape} "
                         f"and {y.shape}")
    if kernel != "linear" and len(args) < 1:
        raise ValueError(f"kernel_dot_product: kernel {kernel!r} needs its parameter as the 4th "
                         f"argument")
    xy = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)
    if kernel == "linear":
        return xy
    if kernel == "polynomial":
        return xy ** args[0]
    if kernel == "sigmoid":
        return jax.nn.sigmoid(args[0] * xy)
    sigma = args[0]
    if not sigma > 0:
        raise ValueError(f"kernel_dot_product: sigma must be positive for the Gaussian kernel, "
                         f"got {sigma}")
    d = jnp.sum(x * x, 1)[:, None] + jnp.sum(y * y, 1)[None, :] - 2 * xy
    return jnp.exp(-d / (2 * sigma * sigma))


_LOSSES = ("mse", "l1", "bce")


def spike_similar_loss(spikes: Any, labels: Any, kernel_type: str = "linear",
                       loss_type: str = "mse", *args: float) -> Array:
    """Spike-pattern similarity loss (SpikingJelly's ``spike_similar_loss``).

    Flatten ``spikes`` to ``s[N, D]``; ``P = kernel_dot_product(s, s, kernel_type, *args)``,
    for ``'linear'`` normalised to the cosine ``P[i, j] / (|s_i| |s_j| + 1e-8)``; the target
    similarity is ``Q = min(labels labels^T, 1)``; the loss is ``mean((P - Q)^2)`` (``'mse'``),
    ``mean|P - Q|`` (``'l1'``) or the binary cross entropy ``-mean(Q log P + (1 - Q) log(1 - P))``
    with ``P`` clipped to ``[0, 1]`` and logs clamped at ``-100`` (``'bce'``, as PyTorch).

    Args:
      spikes: ``[N, *]`` spikes (or rates) of ``N`` samples.
      labels: ``[N, C]`` one-hot (or multi-hot) labels.
      kernel_type: the kernel of :func:`kernel_dot_product` (default ``'linear'``).
      loss_type: ``'mse'``, ``'l1'`` or ``'bce'`` (default ``'mse'``).
      *args: the kernel's parameter.

    Returns:
      scalar loss.
    """
    if loss_type not in _LOSSES:
        raise ValueError(f"spike_similar_loss: loss_type must be one of {_LOSSES}, got "
                         f"{loss_type!r}")
    s = jnp.asarray(spikes)
    s = s.reshape(s.shape[0], -1).astype(jnp.promote_types(s.dtype, jnp.float32))
    labels = jnp.asarray(labels).astype(s.dtype)
    if labels.ndim != 2 or labels.shape[0] != s.shape[0]:
        raise ValueError(f"spike_similar_loss: labels must be [N, C] with N = {s.shape[0]}, got "
                         f"{labels.shape}")
    p = kernel_dot_product(s, s, kernel_type, *args)
    if kernel_type == "linear":
        norm = jnp.linalg.norm(s, axis=1, keepdims=True)
        p = p / (norm * norm.T + 1e-8)
    q = jnp.minimum(jnp.matmul(labels, labels.T, precision=jax.lax.Precision.HIGHEST), 1.0)
    if loss_type == "mse":
        return jnp.mean(jnp.square(p - q))
    if loss_type == "l1":
        return jnp.mean(jnp.abs(p - q))
    p = jnp.clip(p, 0.0, 1.0)   # the cosine can exceed 1 by rounding (the reference raises)
    log_p = jnp.maximum(jnp.log(p), -100.0)
    log_1p = jnp.maximum(jnp.log1p(-p), -100.0)
    return -jnp.mean(q * log_p + (1.0 - q) * log_1p)


__all__ = ["firing_rate_mse_loss", "first_spike_index", "kernel_dot_product",
           "spike_similar_loss", "temporal_efficient_training_cross_entropy"]
