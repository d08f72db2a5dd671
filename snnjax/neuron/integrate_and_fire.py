"""IF, LIF and PLIF modules (SpikingJelly's ``integrate_and_fire``, ``lif`` and ``plif``).

Each class binds its configuration and calls one step of :mod:`snnjax.steps.integrate_and_fire`.
Shapes: ``step_mode='s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax.neuron.base import Array, BaseNode, NonSpikingBaseNode, SimpleBaseNode


class SimpleIFNode(SimpleBaseNode):
    """Integrate-and-fire on :class:`SimpleBaseNode`: ``H = V + X``; ``V`` starts at 0.

    Args:
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: reset value, a finite number ``< v_threshold``, or ``None`` for the soft reset
        (``V`` starts at 0 either way) (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.if_step)


class IFNode(BaseNode):
    """Integrate-and-fire neuron.

    ``H[t] = V[t-1] + X[t]``, ``S[t] = Heaviside(H[t] - v_threshold)``, then hard reset
    ``V[t] = S * v_reset + (1 - S) * H`` or soft reset ``V[t] = H - S * v_threshold``
    (``v_reset=None``). ``V[-1] = v_reset`` (0 with soft reset).

    Args:
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.if_step)


class NonSpikingIFNode(NonSpikingBaseNode):
    """Perfect integrator ``V[t] = V[t-1] + X[t]`` from ``V[-1] = 0``, decoded by ``decode``.

    Args:
      decode: output decoding: ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last_mem'`` (or
        ``'last-mem'``; each ``[N, *]``) or ``None`` (the membrane sequence ``[T, N, *]``) (default
        ``None``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.nonspiking_if_step)


class SimpleLIFNode(SimpleBaseNode):
    """Leaky integrate-and-fire on :class:`SimpleBaseNode`; ``V`` starts at 0.

    ``decay_input=True``: ``H = V + (v_reset - V + X) / tau``;
    ``False``: ``H = V + (v_reset - V) / tau + X``.

    Args:
      tau: membrane time constant, ``> 1`` (required, as in SpikingJelly) (required).
      decay_input: ``True`` / ``False``: divide the input by ``tau`` (required) (required).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: reset value and the level the charge decays towards, a finite number ``<
        v_threshold`` (``None`` is rejected) (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.simple_lif_step)
    param_names = SimpleBaseNode.param_names + ("tau",)
    arg_checks = {"tau": C.greater(1.0), "decay_input": C.boolean}

    def __init__(self, tau: float, decay_input: bool, v_threshold: float = 1.0,
                 v_reset: float = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", *, backend: str = "auto"):
        if v_reset is None:
            raise ValueError(f"{type(self).__name__}: v_reset must be a number (the charge "
                             f"decays towards v_reset), got None; use LIFNode(v_reset=None)")
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         backend=backend)
        self.tau = tau
        self.decay_input = decay_input

    def step_config(self) -> dict:
        return {**super().step_config(), "decay_input": self.decay_input}


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron.

    ``decay_input=True``: ``H = V + (X - (V - r)) / tau``; ``False``: ``H = V - (V - r) / tau + X``
    with ``r = v_reset`` (0 with soft reset). Fire and reset as :class:`IFNode`.

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      decay_input: ``True`` / ``False``: divide the input by ``tau`` (default ``True``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.lif_step)
    param_names = BaseNode.param_names + ("tau",)
    arg_checks = {"tau": C.greater(1.0), "decay_input": C.boolean}

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.tau = tau
        self.decay_input = decay_input

    def step_config(self) -> dict:
        return {**super().step_config(), "decay_input": self.decay_input}


class NonSpikingLIFNode(NonSpikingBaseNode):
    """Leaky integrator ``V[t] = V[t-1] + (X[t] - V[t-1]) / tau`` from ``V[-1] = 0``, decoded.

    Args:
      tau: time constant, ``> 1`` (default ``2.0``).
      decode: output decoding, as :class:`NonSpikingIFNode`: ``'max-mem'``, ``'max-abs-mem'``,
        ``'mean-mem'``, ``'last_mem'`` / ``'last-mem'`` or ``None`` (default ``None``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.nonspiking_lif_step)
    param_names = ("tau",)
    arg_checks = {"tau": C.greater(1.0)}

    def __init__(self, tau: float = 2.0, decode: str | None = None, *, backend: str = "auto"):
        super().__init__(decode, backend=backend)
        self.tau = tau


class ParametricLIFNode(BaseNode):
    """LIF with a learnable time constant: decay ``q = sigmoid(w)`` replaces ``1 / tau``.

    ``decay_input=True``: ``H = V + (X - (V - r)) * q``; ``False``: ``H = V - (V - r) * q + X``.

    Args:
      init_tau: initial time constant, ``> 1``: ``w`` (``nnx.Param``, 0-d float32, shared by the
        layer) starts at ``-log(init_tau - 1)`` so that ``1 / sigmoid(w) = init_tau`` (default
        ``2.0``).
      decay_input: ``True`` / ``False``: divide the input by ``tau`` (default ``True``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.plif_step)
    param_names = BaseNode.param_names + ("w",)
    arg_checks = {"decay_input": C.boolean}

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        init_tau = C.greater(1.0)(type(self).__name__, "init_tau", init_tau)
        self.decay_input = decay_input
        self.w = nnx.Param(jnp.asarray(-math.log(init_tau - 1.0), dtype=jnp.float32))

    def step_config(self) -> dict:
        return {**super().step_config(), "decay_input": self.decay_input}

    @property
    def tau(self) -> Array:
        """Current time constant ``1 / sigmoid(w)``."""
        return 1.0 / jax.nn.sigmoid(self.w.get_value())


__all__ = ["IFNode", "LIFNode", "NonSpikingIFNode", "NonSpikingLIFNode", "ParametricLIFNode",
           "SimpleIFNode", "SimpleLIFNode"]
