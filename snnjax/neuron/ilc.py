"""Inter-layer-connection (ILC) neurons (SpikingJelly's ``neuron.inter_layer_connection``).

Population-coded layers (``act_dim`` groups of ``dec_pop_dim`` neurons) whose spikes at step ``t``
are fed back into their own input at step ``t + 1`` through a learnable block-diagonal linear map,
the ``conn`` part (:class:`ILCConnection`). Multi-step only; the state restarts from its initial
value at every call, as in the reference. The mathematics is :func:`snnjax.steps.population_step`
with the neuron's charge as its ``charge`` static. Shapes: ``x_seq[T, N, A*P] -> [T, N, A*P]``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax import surrogate as sg
from snnjax.neuron.base import Array, BaseNode, MemoryModule, UserMethod, as_input
from snnjax.parts.feedback import ILCConnection

if TYPE_CHECKING:
    from snnjax.neuron.noisy import NoisyBaseNode, NoisyILCBaseNode

DECAY = C.in_range(0.0, 1.0, low_open=False, high_open=False)   # a retention factor per step
CUBA_CHECKS = {"c_decay": DECAY, "v_decay": DECAY}


def init_population(node: ILCBaseNode | NoisyBaseNode, v_threshold: Any, v_reset: Any,
                    surrogate: Any) -> None:
    """Threshold, reset value, surrogate (default ``Rect()``) and membrane ``v`` (initial
    ``v_reset``, 0 with soft reset) of an ILC or noisy spiking population."""
    node.v_threshold, node.v_reset = v_threshold, v_reset
    node.surrogate_function = sg.Rect() if surrogate is None else surrogate
    node.register_memory("v", 0.0 if node.v_reset is None else node.v_reset)


def attach_connection(node: ILCBaseNode | NoisyILCBaseNode, rngs: nnx.Rngs) -> None:
    """The ILC part of ``node``: ``conn`` (from ``node.act_dim``, ``node.dec_pop_dim``) and the
    fed-back state ``feedback`` (0: no feedback enters the first step)."""
    node.out_pop_dim = node.act_dim * node.dec_pop_dim
    node.conn = ILCConnection(node.act_dim, node.dec_pop_dim,
                              rngs=C.rngs(type(node).__name__, "rngs", rngs))
    node.register_memory("feedback", 0.0)


class ILCBaseNode(MemoryModule):
    r"""Spiking population with an inter-layer recurrent connection (abstract: set the charge).

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
    A custom population sets the class attribute ``charge`` (a state charge of
    :mod:`snnjax.steps`) or overrides ``neuronal_charge(self, state, x, params) -> state``.

    Args:
      act_dim: number of groups ``A``, a positive int (required).
      dec_pop_dim: neurons per group ``P``, a positive int (required).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: ``nnx.Rngs`` that initialises ``conn`` (required) (required; keyword-only).

    State: ``v`` (initial ``v_reset``, 0 with soft reset), ``feedback`` (0), after a call the
    final state (``node.v``).
    """

    supported_step_modes = ("m",)
    step_fn = staticmethod(steps.population_step)
    charge: ClassVar[Callable | None] = None
    v_threshold: float
    v_reset: float | None
    surrogate_function: Callable
    act_dim: int
    dec_pop_dim: int
    out_pop_dim: int
    conn: ILCConnection
    param_names, ordered_pairs = BaseNode.param_names, BaseNode.ordered_pairs
    arg_checks = {**BaseNode.arg_checks, "act_dim": C.positive_int, "dec_pop_dim": C.positive_int}

    def __init__(self, act_dim: int, dec_pop_dim: int, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs):
        super().__init__(step_mode="m", backend="scan")
        init_population(self, v_threshold, v_reset, surrogate_function)
        self.act_dim, self.dec_pop_dim = act_dim, dec_pop_dim
        attach_connection(self, rngs)

    def neuronal_charge(self, state: dict, x: Array, params: dict) -> dict:
        """The charge ``{"v": V, ...}, X~ -> {"v": H, ...}`` of a custom population."""
        raise NotImplementedError(f"{type(self).__name__} has no charge: set the class "
                                  f"attribute charge or override neuronal_charge")

    def params(self) -> dict:
        return {**MemoryModule.params(self), "conn_weight": self.conn.weight.get_value(),
                "conn_bias": self.conn.bias.get_value()}

    def init_state(self, x: Any) -> dict:
        """The initial state for ``x[N, *, A*P]``: ``{"v", "feedback", ...}``."""
        x = as_input(x, type(self).__name__)
        if x.ndim < 1 or x.shape[-1] != self.out_pop_dim:
            raise ValueError(f"{type(self).__name__}: the last input axis must hold act_dim * "
                             f"dec_pop_dim = {self.out_pop_dim} neurons, got shape {x.shape}")
        return MemoryModule.init_state(self, x)

    def step_config(self) -> dict:
        """The statics of :func:`snnjax.steps.population_step`, also of the noisy neurons (the
        ILC part iff ``dec_pop_dim`` is set; noise iff ``deterministic`` is False)."""
        return {"charge": type(self).charge or UserMethod(self, "neuronal_charge"),
                "surrogate": self.surrogate_function, "soft_reset": self.v_reset is None,
                "dec_pop_dim": getattr(self, "dec_pop_dim", None),
                "noisy": not getattr(self, "deterministic", True)}

    def multi_step_forward(self, x_seq: Any) -> Array:
        """``x_seq[T, N, A*P] -> out[T, N, A*P]`` from the initial state (the reference keeps no
        state between calls); the final state stays readable (``node.v``)."""
        self.reset()
        return super().multi_step_forward(x_seq)


class ILCIFNode(ILCBaseNode):
    """ILC integrate-and-fire: ``H = V + X~`` (see :class:`ILCBaseNode`). ``v_threshold=1.0``.

    Args:
      act_dim: number of groups ``A``, a positive int (required).
      dec_pop_dim: neurons per group ``P``, a positive int (required).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: ``nnx.Rngs`` that initialises ``conn`` (required) (required; keyword-only).
    """

    charge = staticmethod(steps.ilc_if_charge)


class ILCLIFNode(ILCBaseNode):
    """ILC leaky integrate-and-fire: ``H = v_decay * V + X~`` (decay towards 0 whatever
    ``v_reset`` is, as the reference; see :class:`ILCBaseNode`).

    Args:
      act_dim: number of groups ``A``, a positive int (required).
      dec_pop_dim: neurons per group ``P``, a positive int (required).
      v_decay: membrane retention factor per step (decay towards 0), in ``[0, 1]`` (default
        ``0.75``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: ``nnx.Rngs`` that initialises ``conn`` (required) (required; keyword-only).
    """

    charge = staticmethod(steps.ilc_lif_charge)
    param_names = ILCBaseNode.param_names + ("v_decay",)
    arg_checks = {"v_decay": DECAY}

    def __init__(self, act_dim: int, dec_pop_dim: int, v_decay: float = 0.75,
                 v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, *, rngs: nnx.Rngs):
        super().__init__(act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function, rngs=rngs)
        self.v_decay = v_decay


class ILCCUBALIFNode(ILCBaseNode):
    """ILC current-based LIF: ``C = c_decay C + X~``, ``H = v_decay V + C``
    (:func:`snnjax.steps.cuba_charge`; ``C`` starts at 0 and is never reset). See
    :class:`ILCBaseNode`.

    Args:
      act_dim: number of groups ``A``, a positive int (required).
      dec_pop_dim: neurons per group ``P``, a positive int (required).
      c_decay: retention factor of the synaptic current per step, in ``[0, 1]`` (default ``0.5``).
      v_decay: retention factor of the membrane per step, in ``[0, 1]`` (default ``0.75``).
      v_threshold: firing threshold, a finite number (default ``0.5``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: ``nnx.Rngs`` that initialises ``conn`` (required) (required; keyword-only).

    State: ``v``, ``c`` (0), ``feedback``.
    """

    charge = staticmethod(steps.cuba_charge)
    param_names = ILCBaseNode.param_names + ("c_decay", "v_decay")
    arg_checks = CUBA_CHECKS

    def __init__(self, act_dim: int, dec_pop_dim: int, c_decay: float = 0.5,
                 v_decay: float = 0.75, v_threshold: float = 0.5, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, *, rngs: nnx.Rngs):
        super().__init__(act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function, rngs=rngs)
        self.c_decay, self.v_decay = c_decay, v_decay
        self.register_memory("c", 0.0)


__all__ = ["ILCBaseNode", "ILCCUBALIFNode", "ILCConnection", "ILCIFNode", "ILCLIFNode"]
