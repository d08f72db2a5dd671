"""Further neurons: ``HalfThresholdIFNode`` (``integrate_and_fire``), ``ILIFNode`` (``ilif``) and
``ComplementaryLIFNode`` (``lif_variants``). Mathematics in :mod:`snnjax.steps.extra`.
Shapes: ``step_mode='s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
"""
from __future__ import annotations

import functools
from typing import Callable

from snnjax import _checks as C
from snnjax import steps
from snnjax import surrogate as sg
from snnjax.neuron.base import Array, BaseNode
from snnjax.neuron.integrate_and_fire import LIFNode


class HalfThresholdIFNode(BaseNode):
    """Soft-reset IF neuron whose membrane starts (and restarts after ``reset()``) at ``theta / 2``.

    ``H = V + X``, ``S = sg(H - theta)``, ``V' = H - S * theta``; ``V[-1] = v_threshold / 2``.

    Args:
      v_threshold: firing threshold, finite and ``> 0`` (a one-element array is accepted); the
        membrane starts at ``v_threshold / 2`` (default ``1.0``).
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
    arg_checks = {"v_threshold": C.scalar(C.greater(0.0))}

    def __init__(self, v_threshold: float = 1.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto"):
        super().__init__(v_threshold, None, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.register_memory("v", self.v_threshold / 2.0)


class ILIFNode(LIFNode):
    """Integer-valued LIF (I-LIF, ECCV 2024): emits integer spike counts.

    ``H = V - V / tau + X`` (``decay_input=False``, soft reset forced),
    ``C = round(clip(H / theta, 0, D))`` with ``D = max_spike_count`` of the
    ``MultiLevelSpikeCount`` surrogate (gradient 1 where ``grad_min <= H / theta <= grad_max``),
    ``V' = H - C * theta``. Output ``C`` in ``{0..D}`` (input dtype).

    Args:
      tau: membrane time constant, ``> 1`` (default ``4/3``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      surrogate_function: a spiking ``MultiLevelSpikeCount`` instance; its ``max_spike_count`` is
        ``D`` (default ``None``: ``MultiLevelSpikeCount(4)``).
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

    default_surrogate = functools.partial(sg.MultiLevelSpikeCount, 4)
    step_fn = staticmethod(steps.ilif_step)
    arg_checks = {"surrogate_function": C.all_of(C.surrogate, C.satisfies(
        lambda fn: isinstance(fn, sg.MultiLevelSpikeCount) and fn.spiking,
        "a spiking snnjax.surrogate.MultiLevelSpikeCount"))}

    def __init__(self, tau: float = 4.0 / 3.0, v_threshold: float = 1.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(tau, False, v_threshold, None, surrogate_function, detach_reset,
                         step_mode, store_v_seq, backend=backend)

    def step_config(self) -> dict:
        return {"surrogate": self.surrogate_function, "detach_reset": self.detach_reset}


class ComplementaryLIFNode(BaseNode):
    """Complementary LIF (CLIF, ICML 2024): a complementary potential ``m`` raises the reset.

    ``H = V - V / tau + X``, ``M~ = M sigmoid(H / tau)``, ``S = sg(H - theta)``, ``M' = M~ + S``,
    ``V' = H - S (theta + sigmoid(M'))``; ``V``, ``M`` start at 0. Always soft-reset style, no
    ``detach_reset``. Training (``deterministic=False``, NNX ``model.train()``) uses the surrogate;
    eval (``model.eval()``) replaces a spiking surrogate by a hard Heaviside step (no gradient).

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect(alpha=1.0)``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_state_seqs: ``True`` / ``False``: record ``state_seqs = [v_seq, m_seq]`` (``[T, N, *]``
        each) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
      deterministic: NNX eval flag, ``True`` / ``False`` (``model.eval()`` sets it; ``False``:
        training) (default ``False``; keyword-only).
    """

    default_surrogate = functools.partial(sg.Rect, alpha=1.0)
    step_fn = staticmethod(steps.clif_step)
    param_names = ("v_threshold", "tau")
    arg_checks = {"tau": C.greater(1.0), "store_state_seqs": C.boolean,
                  "deterministic": C.boolean}
    record_flag, recorded = "store_state_seqs", None

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0,
                 surrogate_function: Callable | None = None, step_mode: str = "s",
                 store_state_seqs: bool = False, *, backend: str = "auto",
                 deterministic: bool = False):
        super().__init__(v_threshold, None, surrogate_function, False, step_mode, False,
                         backend=backend)
        self.tau, self.store_state_seqs, self.deterministic = tau, store_state_seqs, deterministic
        self.register_memory("m", 0.0)

    training = property(lambda self: not self.deterministic)   # False after model.eval()

    def step_config(self) -> dict:
        fn = self.surrogate_function
        return {"surrogate": fn if self.training or not getattr(fn, "spiking", True)
                else sg.heaviside}

    @property
    def state_seqs(self) -> list[Array | None] | None:
        """``[v_seq, m_seq]`` of the last call(s) with ``store_state_seqs=True``."""
        v_seq = self.recording("v")
        return None if v_seq is None else [v_seq, self.recording("m")]


__all__ = ["ComplementaryLIFNode", "HalfThresholdIFNode", "ILIFNode"]
