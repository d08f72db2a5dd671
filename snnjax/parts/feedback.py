"""The feedback part of the ILC neurons: the learnable block-diagonal recurrent map ``conn``
(:mod:`snnjax.neuron.ilc`, :mod:`snnjax.neuron.noisy`); its mathematics is
:func:`snnjax.steps.ilc_connection`.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import _checks as C
from snnjax import steps

Array = jax.Array


class ILCConnection(nnx.Module):
    """The recurrent map of the ILC neurons: SpikingJelly's
    ``Conv1d(act_dim, act_dim * dec_pop_dim, kernel_size=dec_pop_dim, groups=act_dim)``.

    Parameters (PyTorch's names, shapes and default initialisation, drawn from ``rngs.params``):
    ``weight`` ``[A*P, 1, P]`` and ``bias`` ``[A*P]``, both ``U(-1/sqrt(P), 1/sqrt(P))``
    (weight first). ``conn(s)``: ``[..., A*P] -> [..., A*P]``, see
    :func:`snnjax.steps.ilc_connection`.

    Args:
      act_dim: number of groups ``A``, a positive int (required).
      dec_pop_dim: neurons per group ``P``, a positive int (required).
      rngs: ``nnx.Rngs`` whose ``params`` stream draws ``weight`` and ``bias`` (required;
        keyword-only).
      param_dtype: dtype of the parameters (default ``jnp.float32``; keyword-only).
    """

    def __init__(self, act_dim: int, dec_pop_dim: int, *, rngs: nnx.Rngs,
                 param_dtype: Any = jnp.float32):
        owner = type(self).__name__
        self.act_dim = C.positive_int(owner, "act_dim", act_dim)
        self.dec_pop_dim = p = C.positive_int(owner, "dec_pop_dim", dec_pop_dim)
        rngs = C.rngs(owner, "rngs", rngs)
        n, b = self.act_dim * p, 1.0 / math.sqrt(p)  # PyTorch's default Conv1d init: fan-in = P
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), (n, 1, p), param_dtype, -b, b))
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (n,), param_dtype, -b, b))

    def __call__(self, s: Array) -> Array:
        w, b = self.weight.get_value(), self.bias.get_value()
        return steps.ilc_connection(s, w, b, self.dec_pop_dim)


__all__ = ["ILCConnection"]
