"""The normalisation part of the MPBN neurons: the ``vbn`` batch-norm parameters and statistics
(:mod:`snnjax.neuron.mpbn`); the normalisation itself is :func:`snnjax.steps.mpbn_step`.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx


class MembraneBatchNorm(nnx.Module):
    """The ``vbn`` part: PyTorch ``BatchNorm1d``/``BatchNorm2d`` state with PyTorch defaults.

    Parameters ``weight`` (init 1) and ``bias`` (init 0), ``[C]`` float32; statistics
    ``running_mean`` (0), ``running_var`` (1), ``num_batches_tracked`` (0). ``eps = 1e-5``,
    ``momentum = 0.1`` (PyTorch convention: weight of the new batch statistic). The
    normalisation itself is done inside the neuron's step.

    Args:
      num_features: channels ``C``. spatial: ``BatchNorm2d`` (``[N, C, H, W]``) rather than
        ``BatchNorm1d`` (``[N, C]`` or ``[N, C, L]``).
    """

    def __init__(self, num_features: int, spatial: bool):
        self.num_features, self.spatial, self.eps, self.momentum = num_features, spatial, 1e-5, 0.1
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))


__all__ = ["MembraneBatchNorm"]
