"""Inter-layer-connection (ILC) neurons (SpikingJelly's ``neuron.inter_layer_connection``).

Population-coded layers (``act_dim`` groups of ``dec_pop_dim`` neurons) whose spikes at step ``t``
are fed back into their own input at step ``t + 1`` through a learnable block-diagonal linear map
``conn``. Multi-step only; the state restarts from its initial value at every call, as in the
reference. The mathematics is :func:`snnjax.steps.population_step`.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import steps
from snnjax import surrogate as sg
from snnjax.neuron.base import (
    Array, ThresholdNode, check_number,
)


def _check_positive_int(name: str, value: Any, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def _check_rngs(rngs: Any, owner: str, what: str) -> nnx.Rngs:
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"{owner}: rngs must be a flax.nnx.Rngs (e.g. rngs=nnx.Rngs(0)), used to "
                        f"{what}; got {rngs!r}")
    return rngs


class ILCConnection(nnx.Module):
    """The recurrent map of the ILC neurons: SpikingJelly's
    ``Conv1d(act_dim, act_dim * dec_pop_dim, kernel_size=dec_pop_dim, groups=act_dim)``.

    Parameters (PyTorch's names, shapes and default initialisation, drawn from ``rngs.params``):
    ``weight`` ``[A*P, 1, P]`` and ``bias`` ``[A*P]``, both ``U(-1/sqrt(P), 1/sqrt(P))``
    (weight first). ``conn(s)``: ``[..., A*P] -> [..., A*P]``, see
    :func:`snnjax.steps.ilc_connection`.
    """

    def __init__(self, act_dim: int, dec_pop_dim: int, *, rngs: nnx.Rngs,
                 param_dtype: Any = jnp.float32):
        owner = type(self).__name__
        self.act_dim = _check_positive_int("act_dim", act_dim, owner)
        self.dec_pop_dim = _check_positive_int("dec_pop_dim", dec_pop_dim, owner)
        rngs = _check_rngs(rngs, owner, "initialise conn.weight and conn.bias")
        n, p = self.act_dim * self.dec_pop_dim, self.dec_pop_dim
        bound = 1.0 / math.sqrt(p)  # PyTorch's default Conv1d init: fan-in = P
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), (n, 1, p), param_dtype,
                                                   -bound, bound))
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (n,), param_dtype, -bound, bound))

    def __call__(self, s: Array) -> Array:
        return steps.ilc_connection(s, self.weight.get_value(), self.bias.get_value(),
                                    self.dec_pop_dim)


class PopulationNode(ThresholdNode):
    """Shared part of the ILC and noisy spiking layers (multi-step only, fresh state per call).

    Subclasses define :meth:`neuronal_charge` ``(state, x, params) -> state`` (the charged
    potential in ``state["v"]``) and may add state entries in :meth:`init_state`. The membrane
    starts at ``v_reset`` (0 with ``v_reset=None``, soft reset). After a call the final state can
    be read as attributes (``node.v``, ``node.c``).
    """

    supported_step_modes = ("m",)
    default_surrogate = sg.Rect

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, *, backend: str = "scan"):
        super().__init__(v_threshold, v_reset, surrogate_function, step_mode="m", backend=backend)

    def neuronal_charge(self, state: dict, x: Array, params: dict) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define "
                                  f"neuronal_charge(state, x, params) -> state")

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        v0 = 0.0 if self.v_reset is None else self.v_reset
        return {"v": jnp.full(x.shape, v0, steps.state_dtype(x.dtype))}

    def multi_step_forward(self, x_seq: Array) -> Array:
        """``x_seq[T, N, *] -> out[T, N, *]`` from the initial state (the reference keeps no state
        between calls); the final state stays readable (``node.v``)."""
        self._check_sequence(x_seq)
        state, out = self.multi_step(self.init_state(x_seq[0]), x_seq)
        self.memory.set_value(state)
        return out


class _CUBACharge:
    """Current-based charge ``C = c_decay C + X``, ``H = v_decay V + C`` and the ``c`` state (0)."""

    c_decay: float
    v_decay: float

    def _init_cuba(self, c_decay: float, v_decay: float) -> None:
        owner = type(self).__name__
        self.c_decay = check_number("c_decay", c_decay, owner)
        self.v_decay = check_number("v_decay", v_decay, owner)

    def params(self) -> dict:
        return {**super().params(), "c_decay": self.c_decay, "v_decay": self.v_decay}

    def init_state(self, x: Array) -> dict:
        state = super().init_state(x)
        return {**state, "c": jnp.zeros_like(state["v"])}

    def neuronal_charge(self, state: dict, x: Array, params: dict) -> dict:
        return steps.cuba_charge(state, x, params)


class ConnectionFeedback:
    """Mixin for populations with the ILC connection ``self.conn`` (and ``self.out_pop_dim``):
    its parameters join ``params()`` and the fed-back value joins the state."""

    def params(self) -> dict:
        return {**super().params(), "conn_weight": self.conn.weight.get_value(),
                "conn_bias": self.conn.bias.get_value()}

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.out_pop_dim:
            raise ValueError(f"{type(self).__name__}: the last axis of the input must hold "
                             f"act_dim * dec_pop_dim = {self.out_pop_dim} neurons "
                             f"([T, N, {self.out_pop_dim}] for x_seq), got a step of shape "
                             f"{tuple(x.shape)}")
        state = super().init_state(x)
        # no feedback enters the first step
        return {**state, "feedback": jnp.zeros_like(state["v"])}


class ILCBaseNode(ConnectionFeedback, PopulationNode):
    r"""Spiking population with an inter-layer recurrent connection (abstract: define the charge).

    ``act_dim`` (A) groups of ``dec_pop_dim`` (P) neurons; input ``x_seq`` ``[T, N, A*P]`` (any
    leading per-step axes are allowed; the last one holds the ``A*P`` neurons). Per step, with
    ``F[0] = 0``:

    .. math:: \tilde X[t] = X[t] + F[t],\ H = \mathrm{charge}(V, \tilde X),\
              S = \Theta_{sg}(H - \theta),\ V = R(H, S),\ F[t+1] = \mathrm{conn}(S[t])

    ``conn`` is :class:`ILCConnection` (learnable ``conn.weight`` ``[A*P, 1, P]``, ``conn.bias``
    ``[A*P]``; the bias is fed back even without spikes). ``R``: hard reset to ``v_reset``, or
    soft reset (``v_reset=None``; the reference crashes there). The reset is never detached.
    The caller's input is not modified (the reference adds the feedback into it in place).
    The feedback is a reduction over each group, so the sequence engine is ``lax.scan``.
    Default surrogate ``Rect()``; ``rngs`` (``nnx.Rngs``) initialises ``conn``.
    """

    def __init__(self, act_dim: int, dec_pop_dim: int, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs):
        super().__init__(v_threshold, v_reset, surrogate_function, backend="scan")
        owner = type(self).__name__
        self.act_dim = _check_positive_int("act_dim", act_dim, owner)
        self.dec_pop_dim = _check_positive_int("dec_pop_dim", dec_pop_dim, owner)
        self.out_pop_dim = self.act_dim * self.dec_pop_dim
        self.conn = ILCConnection(self.act_dim, self.dec_pop_dim,
                                  rngs=_check_rngs(rngs, owner, "initialise conn"))

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return steps.population_step(state, x, params, charge=self.neuronal_charge,
                                     surrogate=self.surrogate_function,
                                     soft_reset=self.soft_reset, dec_pop_dim=self.dec_pop_dim)


class ILCIFNode(ILCBaseNode):
    """ILC integrate-and-fire: ``H = V + X~`` (see :class:`ILCBaseNode`). ``v_threshold=1.0``."""

    def neuronal_charge(self, state: dict, x: Array, params: dict) -> dict:
        return steps.ilc_if_charge(state, x, params)


class ILCLIFNode(ILCBaseNode):
    """ILC leaky integrate-and-fire: ``H = v_decay * V + X~`` (see :class:`ILCBaseNode`)."""

    def __init__(self, act_dim: int, dec_pop_dim: int, v_decay: float = 0.75,
                 v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, *, rngs: nnx.Rngs):
        super().__init__(act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function,
                         rngs=rngs)
        self.v_decay = check_number("v_decay", v_decay, type(self).__name__)

    def params(self) -> dict:
        return {**super().params(), "v_decay": self.v_decay}

    def neuronal_charge(self, state: dict, x: Array, params: dict) -> dict:
        return steps.ilc_lif_charge(state, x, params)


class ILCCUBALIFNode(_CUBACharge, ILCBaseNode):
    """ILC current-based LIF: ``C = c_decay C + X~``, ``H = v_decay V + C`` (``C`` starts at 0 and
    is never reset). Default ``v_threshold=0.5`` (not 1.0). See :class:`ILCBaseNode`."""

    def __init__(self, act_dim: int, dec_pop_dim: int, c_decay: float = 0.5,
                 v_decay: float = 0.75, v_threshold: float = 0.5, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, *, rngs: nnx.Rngs):
        ILCBaseNode.__init__(self, act_dim, dec_pop_dim, v_threshold, v_reset,
                             surrogate_function, rngs=rngs)
        self._init_cuba(c_decay, v_decay)


__all__ = ["ILCBaseNode", "ILCCUBALIFNode", "ILCConnection", "ILCIFNode", "ILCLIFNode",
           "PopulationNode"]
