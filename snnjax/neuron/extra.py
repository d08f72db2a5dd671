"""Further neurons: ``HalfThresholdIFNode`` (``integrate_and_fire``), ``ILIFNode`` (``ilif``) and
``ComplementaryLIFNode`` (``lif_variants``). Mathematics in :mod:`snnjax.steps.extra`."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from snnjax import steps
from snnjax import surrogate as sg
from snnjax.neuron.base import (
    Array, BaseNode, check_bool, check_greater, check_surrogate,
)
from snnjax.neuron.integrate_and_fire import LIFNode
from snnjax.steps import extra as extra_steps


def _scalar(value: Any) -> Any:
    """A one-element array (the reference accepts a scalar tensor) becomes a Python float."""
    if hasattr(value, "shape") and not isinstance(value, (np.floating, np.integer)):
        if np.size(value) != 1:
            raise ValueError(f"v_threshold must be a scalar, got shape {np.shape(value)}")
        return float(np.asarray(value).reshape(()))
    return value


class HalfThresholdIFNode(BaseNode):
    """Soft-reset IF neuron whose membrane starts (and restarts after ``reset()``) at ``theta / 2``.

    ``H = V + X``, ``S = sg(H - theta)``, ``V' = H - S * theta``; ``V[-1] = v_threshold / 2``.
    ``v_threshold`` must be finite and > 0 (a one-element array is accepted).
    Shapes: ``'s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
    """

    def __init__(self, v_threshold: float = 1.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto"):
        v_threshold = check_greater("v_threshold", _scalar(v_threshold), 0.0, type(self).__name__)
        super().__init__(v_threshold, None, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)

    def _initial_v(self) -> float:
        return self.v_threshold / 2.0

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.if_charge(v, x, params)


class ILIFNode(LIFNode):
    """Integer-valued LIF (I-LIF, ECCV 2024): emits integer spike counts.

    ``H = V - V / tau + X`` (``decay_input=False``, soft reset forced),
    ``C = round(clip(H / theta, 0, D))`` with ``D = max_spike_count`` of the
    ``MultiLevelSpikeCount`` surrogate (gradient 1 where ``grad_min <= H / theta <= grad_max``),
    ``V' = H - C * theta``. Output ``C`` in ``{0..D}`` (input dtype). Default ``tau = 4/3``.
    """

    def __init__(self, tau: float = 4.0 / 3.0, v_threshold: float = 1.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        owner = type(self).__name__
        fn = sg.MultiLevelSpikeCount(4) if surrogate_function is None else \
            check_surrogate(surrogate_function, owner)
        if not isinstance(fn, sg.MultiLevelSpikeCount) or not fn.spiking:
            raise ValueError(f"{owner}: surrogate_function must be a spiking "
                             f"snnjax.surrogate.MultiLevelSpikeCount, got {surrogate_function!r}")
        super().__init__(tau, False, v_threshold, None, fn, detach_reset, step_mode, store_v_seq,
                         backend=backend)

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return extra_steps.ilif_step(state, x, params, surrogate=self.surrogate_function,
                                     detach_reset=self.detach_reset)


class ComplementaryLIFNode(BaseNode):
    """Complementary LIF (CLIF, ICML 2024): a complementary potential ``m`` raises the reset.

    ``H = V - V / tau + X``, ``M~ = M sigmoid(H / tau)``, ``S = sg(H - theta)``, ``M' = M~ + S``,
    ``V' = H - S (theta + sigmoid(M'))``; ``V``, ``M`` start at 0. Always soft-reset style, no
    ``detach_reset``. Training (``deterministic=False``, NNX ``model.train()``) uses the surrogate;
    eval (``model.eval()``) replaces a spiking surrogate by a hard Heaviside step (no gradient).
    ``store_state_seqs=True`` keeps ``state_seqs = [v_seq, m_seq]`` (``[T, N, *]``) of multi-step
    calls. Default surrogate ``Rect(alpha=1.0)``; ``tau`` > 1.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0,
                 surrogate_function: Callable | None = None, step_mode: str = "s",
                 store_state_seqs: bool = False, *, backend: str = "auto",
                 deterministic: bool = False):
        owner = type(self).__name__
        super().__init__(v_threshold, None,
                         sg.Rect(alpha=1.0) if surrogate_function is None else surrogate_function,
                         False, step_mode, False, backend=backend)
        self.tau = check_greater("tau", tau, 1.0, owner)
        self.store_state_seqs = check_bool("store_state_seqs", store_state_seqs, owner)
        self.deterministic = check_bool("deterministic", deterministic, owner)

    @property
    def training(self) -> bool:
        """True unless the module was put in eval mode (``model.eval()``)."""
        return not self.deterministic

    def params(self) -> dict:
        return {"v_threshold": self.v_threshold, "tau": self.tau}

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        zeros = jnp.zeros(x.shape, steps.state_dtype(x.dtype))
        return {"v": zeros, "m": zeros}

    def _spike_fn(self) -> Callable[[Array], Array]:
        fn = self.surrogate_function
        if self.training or not getattr(fn, "spiking", True):
            return fn
        return sg.heaviside

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return extra_steps.clif_step(state, x, params, surrogate=self._spike_fn())

    @property
    def state_seqs(self) -> list | None:
        """``[v_seq, m_seq]`` of the last multi-step call with ``store_state_seqs=True``."""
        seq = self.state_seq.get_value()
        return None if seq is None else [seq["v"], seq["m"]]

    def multi_step_forward(self, x_seq: Array) -> Array:
        if not self.store_state_seqs:
            self.state_seq.set_value(None)
            return super().multi_step_forward(x_seq)
        self._check_sequence(x_seq)
        state = self._stored_state(x_seq[0])
        seq, out = self.multi_step(state, x_seq, return_state_seq=True)
        self.memory.set_value(jax.tree_util.tree_map(lambda a: a[-1], seq))
        self.state_seq.set_value(seq)
        return out


__all__ = ["ComplementaryLIFNode", "HalfThresholdIFNode", "ILIFNode"]
