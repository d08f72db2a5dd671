"""IF, LIF and PLIF modules (SpikingJelly's ``integrate_and_fire``, ``lif`` and ``plif``)."""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import steps
from snnjax.neuron.base import (
    Array, BaseNode, NonSpikingBaseNode, SimpleBaseNode, check_bool, check_greater, check_number,
)


class SimpleIFNode(SimpleBaseNode):
    """Integrate-and-fire on :class:`SimpleBaseNode`: ``H = V + X``; ``V`` starts at 0.

    Args: ``v_threshold=1.0``, ``v_reset=0.0`` (``None``: soft reset),
    ``surrogate_function=Sigmoid()``, ``detach_reset=False``, ``step_mode='s'``.
    """

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.if_charge(v, x, params)


class IFNode(BaseNode):
    """Integrate-and-fire neuron.

    ``H[t] = V[t-1] + X[t]``, ``S[t] = Heaviside(H[t] - v_threshold)``, then hard reset
    ``V[t] = S * v_reset + (1 - S) * H`` or soft reset ``V[t] = H - S * v_threshold``
    (``v_reset=None``). ``V[-1] = v_reset`` (0 with soft reset).
    Shapes: ``step_mode='s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
    """

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.if_charge(v, x, params)


class NonSpikingIFNode(NonSpikingBaseNode):
    """Perfect integrator ``V[t] = V[t-1] + X[t]`` from ``V[-1] = 0``, decoded by ``decode``."""

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.if_charge(v, x, params)


class SimpleLIFNode(SimpleBaseNode):
    """Leaky integrate-and-fire on :class:`SimpleBaseNode`; ``V`` starts at 0.

    ``decay_input=True``: ``H = V + (v_reset - V + X) / tau``;
    ``False``: ``H = V + (v_reset - V) / tau + X``. ``tau`` and ``decay_input`` are required,
    as in SpikingJelly. ``v_reset=None`` is rejected (the charge needs ``v_reset``).
    """

    def __init__(self, tau: float, decay_input: bool, v_threshold: float = 1.0,
                 v_reset: float = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", *, backend: str = "auto"):
        owner = type(self).__name__
        if v_reset is None:
            raise ValueError(f"{owner}: v_reset=None (soft reset) is not supported: the charge "
                             f"equation decays towards v_reset; use LIFNode(v_reset=None)")
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         backend=backend)
        self.tau = check_number("tau", tau, owner)
        self.decay_input = check_bool("decay_input", decay_input, owner)

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.simple_lif_charge(v, x, params, decay_input=self.decay_input)


class LIFNode(BaseNode):
    """Leaky integrate-and-fire neuron.

    ``decay_input=True``: ``H = V + (X - (V - r)) / tau``; ``False``: ``H = V - (V - r) / tau + X``
    with ``r = v_reset`` (0 with soft reset). Fire and reset as :class:`IFNode`.
    ``tau`` must be > 1. Shapes as :class:`IFNode`.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.tau = check_greater("tau", tau, 1.0, owner)
        self.decay_input = check_bool("decay_input", decay_input, owner)

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.lif_charge(v, x, params, decay_input=self.decay_input,
                                soft_reset=self.soft_reset)


class NonSpikingLIFNode(NonSpikingBaseNode):
    """Leaky integrator ``V[t] = V[t-1] + (X[t] - V[t-1]) / tau`` from ``V[-1] = 0``, decoded."""

    def __init__(self, tau: float = 2.0, decode: str | None = None, *, backend: str = "auto"):
        super().__init__(decode, backend=backend)
        self.tau = check_number("tau", tau, type(self).__name__)

    def params(self) -> dict:
        return {"tau": self.tau}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.nonspiking_lif_charge(v, x, params)


class ParametricLIFNode(BaseNode):
    """LIF with a learnable time constant: decay ``q = sigmoid(w)`` replaces ``1 / tau``.

    ``w`` (``nnx.Param``, 0-d float32) starts at ``-log(init_tau - 1)`` so that
    ``1 / sigmoid(w) = init_tau``; one ``w`` is shared by the whole layer.
    ``decay_input=True``: ``H = V + (X - (V - r)) * q``; ``False``: ``H = V - (V - r) * q + X``.
    """

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        init_tau = check_greater("init_tau", init_tau, 1.0, owner)
        self.decay_input = check_bool("decay_input", decay_input, owner)
        self.w = nnx.Param(jnp.asarray(-math.log(init_tau - 1.0), dtype=jnp.float32))

    def params(self) -> dict:
        return {**super().params(), "w": self.w.get_value()}

    @property
    def tau(self) -> Array:
        """Current time constant ``1 / sigmoid(w)``."""
        return 1.0 / jax.nn.sigmoid(self.w.get_value())

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.plif_charge(v, x, params, decay_input=self.decay_input,
                                 soft_reset=self.soft_reset)

