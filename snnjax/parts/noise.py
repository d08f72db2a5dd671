"""The noise part of the noisy neurons: coloured noise drawn, stored, replayed and selected.

:class:`ColoredNoise` is a Flax NNX module that a noisy neuron holds as its ``noise`` attribute
(:mod:`snnjax.neuron.noisy`); it knows no neuron equation. The noise series come from
:func:`snnjax.noise.powerlaw_psd_gaussian`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.core  # noqa: F401  (jax.core.Tracer below: type checkers need the submodule import)
import jax.numpy as jnp
from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax.noise import powerlaw_psd_gaussian

Array = jax.Array


class NoiseBuffer(nnx.Variable):
    """Drawn or loaded noise realisations (not trained); ``None`` when absent."""


class NoiseCounter(nnx.Variable):
    """Index of the RL step whose drawn noise the latest training call used (``-1``: none yet)."""


class ColoredNoise(nnx.Module):
    """The noise part of a noisy neuron: drawing, storing, replaying and selecting its noise.

    One array holds the ``kinds`` noise kinds side by side on the last axis (2: membrane then
    spike noise; 1 for the non-spiking node), which is also the layout of
    :meth:`get_colored_noise` and :meth:`load_colored_noise`.

    Args:
      num_node: neurons per step (positive int). T: time steps of one call (positive int).
      beta: exponent of the power spectrum ``1 / f^beta`` (0: white noise).
      rngs: ``nnx.Rngs`` (stream ``'noise'``, else ``'default'``), an ``nnx.RngStream`` or
        ``None`` (then only :meth:`load_colored_noise` supplies noise).
      kinds: noise kinds. owner: the neuron's class name, for messages.

    Variables: ``eps`` ``[num_rl_step, T, kinds * num_node]`` (float32), ``loaded_noise``
    ``[B, T, kinds * num_node]`` (``None`` when absent), ``noise_step`` (int32).
    """

    def __init__(self, num_node: int, T: int, beta: float, rngs: Any, *, kinds: int,
                 owner: str):
        self.num_node = C.positive_int(owner, "num_node", num_node)
        self.T = C.positive_int(owner, "T", T)
        self.beta, self.kinds, self.owner = C.number(owner, "beta", beta), kinds, owner
        rngs = C.optional_rngs(owner, "rngs", rngs)
        self.rngs = nnx.data(None if rngs is None else (
            rngs["noise"] if isinstance(rngs, nnx.Rngs) else rngs).fork())
        self.eps, self.loaded_noise = NoiseBuffer(None), NoiseBuffer(None)
        self.noise_step = NoiseCounter(jnp.asarray(-1, jnp.int32))

    def reset_noise(self, num_rl_step: int) -> None:
        """Draw ``num_rl_step`` RL steps of noise: per neuron and kind one coloured series
        (exponent ``beta``) of length ``num_rl_step * T``, cut into ``[num_rl_step, T]``; resets
        ``noise_step`` to -1."""
        r, k, t = C.positive_int(self.owner, "num_rl_step", num_rl_step), self.num_node, self.T
        if self.rngs is None:
            raise ValueError(f"{self.owner}: reset_noise needs random keys: construct the module "
                             f"with rngs=nnx.Rngs(...), or use load_colored_noise(cn)")
        ys = [powerlaw_psd_gaussian(self.beta, (k, r * t), key=self.rngs(), dtype=jnp.float32)
              for _ in range(self.kinds)]
        # eps[r, t, j] = y[j, r * T + t]: one continuous series across consecutive RL steps
        self.eps.set_value(jnp.concatenate(ys).reshape(self.kinds * k, r, t).transpose(1, 2, 0))
        self.noise_step.set_value(jnp.asarray(-1, jnp.int32))

    def get_colored_noise(self) -> Array:
        """The drawn noise used by the latest training call, ``[T, kinds * num_node]``."""
        if self.eps.get_value() is None:
            raise ValueError(f"{self.owner}: no noise drawn yet: call reset_noise first")
        return self._at(self.noise_step.get_value())

    def _at(self, step: Array) -> Array:  # NaN once the drawn noise is used up (under jit)
        return jnp.take(self.eps.get_value(), step, axis=0, mode="fill", fill_value=jnp.nan)

    def load_colored_noise(self, cn: Any) -> None:
        """Use ``cn`` ``[B, T', kinds * num_node]`` (``T' >= T``; sample ``b`` gets ``cn[b]``)
        instead of the drawn noise until :meth:`cancel_load`; ``noise_step`` does not advance."""
        cn, width = jnp.asarray(cn), self.kinds * self.num_node
        if cn.ndim != 3 or cn.shape[1] < self.T or cn.shape[2] != width:
            raise ValueError(f"{self.owner}: load_colored_noise expects cn of shape "
                             f"[B, T >= {self.T}, {width}], got {tuple(cn.shape)}")
        self.loaded_noise.set_value(cn)

    def cancel_load(self) -> None:
        """Go back to the drawn noise."""
        self.loaded_noise.set_value(None)

    def split(self, cn: Array) -> tuple[Array, ...]:
        """``[..., kinds * num_node]`` -> one ``[..., num_node]`` array per kind."""
        return tuple(jnp.split(cn, self.kinds, axis=-1))

    def drawn(self, kind: int) -> Array | None:
        """Kind ``kind`` of the drawn noise, ``[num_rl_step, T, num_node]`` (``None`` before
        :meth:`reset_noise`)."""
        return None if self.eps.get_value() is None else self.split(self.eps.get_value())[kind]

    def take(self, x_seq: Array, training: bool) -> tuple[Array, tuple | None]:
        """A stateful call's input and noise: the first ``T`` steps of ``x_seq`` (the reference
        loops over the constructor's ``T``) and, in training, the noise kinds, time first
        (drawn ``[T, num_node]``, advancing ``noise_step``; loaded ``[T, B, num_node]``)."""
        self.check_width(x_seq)
        if x_seq.shape[0] < self.T:
            raise ValueError(f"{self.owner}: x_seq has {x_seq.shape[0]} time steps but the layer "
                             f"runs T = {self.T} steps")
        x_seq, cn, eps = x_seq[:self.T], self.loaded_noise.get_value(), self.eps.get_value()
        if not training:
            return x_seq, None
        if cn is not None:
            return x_seq, self.split(jnp.swapaxes(cn[:, :self.T], 0, 1))
        if eps is None:
            raise ValueError(f"{self.owner}: training mode needs noise: call reset_noise("
                             f"num_rl_step) or load_colored_noise(cn) first, or model.eval()")
        step = self.noise_step.get_value() + 1
        # under a transform the index is traced: an exhausted buffer yields NaN noise instead
        if not isinstance(step, jax.core.Tracer) and int(step) >= eps.shape[0]:
            raise IndexError(f"{self.owner}: all {eps.shape[0]} RL steps of drawn noise are used "
                             f"up; call reset_noise(num_rl_step) again")
        self.noise_step.set_value(step)
        return x_seq, self.split(self._at(step))

    def check_width(self, x: Array) -> None:
        """The last input axis must hold the layer's ``num_node`` neurons."""
        if x.ndim < 1 or x.shape[-1] != self.num_node:
            raise ValueError(f"{self.owner}: the last input axis must hold num_node = "
                             f"{self.num_node} neurons, got shape {tuple(x.shape)}")

    def combine(self, x: Any, noise: Any, seq: bool) -> tuple[Array, ...]:
        """The step input ``(X, n_1, ..., n_kinds)`` of a training step (``seq=False``) or
        sequence (:func:`snnjax.steps.broadcast_noise`)."""
        if self.kinds == 1 and noise is not None and not isinstance(noise, tuple):
            noise = (noise,)
        if not isinstance(noise, (tuple, list)) or len(noise) != self.kinds:
            raise ValueError(f"{self.owner}: in training mode the pure API needs the noise "
                             f"{'n' if self.kinds == 1 else '(n_v, n_s)'} (e.g. from "
                             f"get_colored_noise()) or model.eval(), got {type(noise).__name__}")
        x = jnp.asarray(x)
        self.check_width(x)
        return (x,) + tuple(steps.broadcast_noise(n, x, seq) for n in noise)


__all__ = ["ColoredNoise", "NoiseBuffer", "NoiseCounter"]
