"""Adaptive and nonlinear IF modules (SpikingJelly's ``neuron.adapt`` and ``neuron.nonlinear_if``).

The mathematics, including the overflow guard of the quadratic and exponential charges (the
charged potential is clamped to ``[-B, B]``, ``B = sqrt(finfo.max) / 4``), is in
:mod:`snnjax.steps.adaptive`. Shapes: ``'s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *]``.
"""
from __future__ import annotations

from typing import Callable

from snnjax import _checks as C
from snnjax import steps
from snnjax.neuron.base import Array, BaseNode, UserMethod


class AdaptBaseNode(BaseNode):
    """Base of the spiking neurons with an adaptation variable ``w`` (SpikingJelly's ``AdaptBaseNode``).

    ``H = charge(V, X, W)``, ``S = sg(H - v_threshold)``,
    ``W' = W + (a (H - v_rest) - W) / tau_w + b S``, ``V' = reset(H, S)``
    (:func:`snnjax.steps.adaptive.adaptive_step`). Subclass and override
    ``neuronal_charge(self, v, x, params, w) -> H`` (or SpikingJelly's ``neuronal_charge(self, x)``
    reading ``self.v`` and ``self.w``); ``neuronal_adaptation(self, w, h, params)`` may be
    overridden too. Calling ``AdaptBaseNode`` itself raises ``NotImplementedError``.

    Args:
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset (default
        ``0.0``).
      v_rest: resting potential of the adaptation, a finite number (default ``0.0``).
      w_rest: initial adaptation ``w``, a finite number (default ``0.0``).
      tau_w: adaptation time constant, ``> 0`` (default ``2.0``).
      a: subthreshold coupling of ``w`` to ``H - v_rest``, a finite number (default ``0.0``).
      b: spike-triggered increment of ``w``, a finite number (default ``0.0``).
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

    State: ``v`` (initial ``v_reset``, 0 with soft reset) and ``w`` (initial ``w_rest``).
    """

    step_fn = staticmethod(steps.adaptive_step)
    param_names = BaseNode.param_names + ("v_rest", "tau_w", "a", "b")
    arg_checks = {"v_rest": C.number, "w_rest": C.number, "tau_w": C.greater(0.0), "a": C.number,
                  "b": C.number}

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0, v_rest: float = 0.0,
                 w_rest: float = 0.0, tau_w: float = 2.0, a: float = 0.0, b: float = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.v_rest, self.w_rest, self.tau_w, self.a, self.b = v_rest, w_rest, tau_w, a, b
        self.register_memory("w", self.w_rest)

    def neuronal_charge(self, v: Array, x: Array, params: dict, w: Array) -> Array:
        raise NotImplementedError(f"{type(self).__name__} has no dynamics of its own: override "
                                  f"neuronal_charge(self, v, x, params, w) or use IzhikevichNode")

    def step_config(self) -> dict:
        config = {**super().step_config(), "charge": UserMethod(self, "neuronal_charge")}
        if "neuronal_adaptation" in vars(type(self)):
            config["adaptation"] = UserMethod(self, "neuronal_adaptation")
        return config


class IzhikevichNode(AdaptBaseNode):
    """Izhikevich neuron: quadratic charge with a spike-triggered, subthreshold-coupled recovery ``w``.

    ``H = V + (X + a0 (V - v_rest)(V - v_c) - W) / tau``, ``S = sg(H - v_threshold)``,
    ``W' = W + (a (H - v_rest) - W) / tau_w + b S`` (pre-reset ``H``; the ``b S`` term keeps its
    surrogate gradient even with ``detach_reset``), ``V' = reset(H, S)``.

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      v_c: critical voltage, a finite number (default ``0.8``).
      a0: quadratic gain, ``> 0`` (default ``1.0``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value and the initial membrane, a finite number ``< v_threshold``;
        ``None``: soft reset (default ``0.0``).
      v_rest: resting potential, a finite number (default ``-0.1``).
      w_rest: initial recovery ``w``, a finite number (default ``0.0``).
      tau_w: recovery time constant, ``> 0`` (default ``2.0``).
      a: subthreshold coupling of ``w`` to ``H - v_rest``, a finite number (default ``0.0``).
      b: spike-triggered increment of ``w``, a finite number (default ``0.0``).
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

    Initial ``v = v_reset`` (0 by default, not ``v_rest``; 0 with soft reset), ``w = w_rest``.
    """

    step_fn = staticmethod(steps.izhikevich_step)
    param_names = AdaptBaseNode.param_names + ("tau", "v_c", "a0")
    arg_checks = {"tau": C.greater(1.0), "v_c": C.number, "a0": C.greater(0.0)}

    def __init__(self, tau: float = 2.0, v_c: float = 0.8, a0: float = 1.0,
                 v_threshold: float = 1.0, v_reset: float | None = 0.0, v_rest: float = -0.1,
                 w_rest: float = 0.0, tau_w: float = 2.0, a: float = 0.0, b: float = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, v_rest, w_rest, tau_w, a, b, surrogate_function,
                         detach_reset, step_mode, store_v_seq, backend=backend)
        self.tau, self.v_c, self.a0 = tau, v_c, a0

    def step_config(self) -> dict:
        return BaseNode.step_config(self)


def _check_reset_order(node: QIFNode | EIFNode) -> None:
    """With hard reset the nonlinear IFs need ``v_reset < v_threshold`` and ``v_reset <= v_rest``."""
    owner = type(node).__name__
    C.ordered(owner, "v_reset", node.v_reset, "v_threshold", node.v_threshold)
    C.ordered(owner, "v_reset", node.v_reset, "v_rest", node.v_rest, strict=False)


class QIFNode(BaseNode):
    """Quadratic integrate-and-fire neuron.

    ``H = V + (X + a0 (V - v_rest)(V - v_c)) / tau``, ``S = sg(H - v_threshold)``,
    ``V' = reset(H, S)``.

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      v_c: critical voltage, a finite number (default ``0.8``).
      a0: quadratic gain, ``> 0`` (default ``1.0``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_rest: resting potential, a finite number ``>= v_reset`` (hard reset); note the argument
        order, ``v_rest`` before ``v_reset`` (default ``0.0``).
      v_reset: hard-reset value and the initial membrane, a finite number ``< v_threshold`` and
        ``<= v_rest``; ``None``: soft reset (initial membrane 0) (default ``-0.1``).
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

    step_fn = staticmethod(steps.qif_step)
    param_names = BaseNode.param_names + ("tau", "v_c", "a0", "v_rest")
    arg_checks = {"tau": C.greater(1.0), "v_c": C.number, "a0": C.greater(0.0),
                  "v_rest": C.number}

    def __init__(self, tau: float = 2.0, v_c: float = 0.8, a0: float = 1.0,
                 v_threshold: float = 1.0, v_rest: float = 0.0, v_reset: float | None = -0.1,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.tau, self.v_c, self.a0, self.v_rest = tau, v_c, a0, v_rest
        _check_reset_order(self)


class EIFNode(BaseNode):
    """Exponential integrate-and-fire neuron.

    ``H = V + (X + v_rest - V + delta_T exp((V - theta_rh) / delta_T)) / tau``,
    ``S = sg(H - v_threshold)``, ``V' = reset(H, S)``. The exponent is capped at ``log(B)`` and
    ``H`` clamped to ``[-B, B]`` (no inf/NaN; see :mod:`snnjax.steps.adaptive`).

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      delta_T: sharpness of the exponential, ``> 0`` (default ``1.0``).
      theta_rh: rheobase threshold, a finite number (default ``0.8``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_rest: resting potential, a finite number ``>= v_reset`` (hard reset); note the argument
        order, ``v_rest`` before ``v_reset`` (default ``0.0``).
      v_reset: hard-reset value and the initial membrane, a finite number ``< v_threshold`` and
        ``<= v_rest``; ``None``: soft reset (initial membrane 0) (default ``-0.1``).
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

    step_fn = staticmethod(steps.eif_step)
    param_names = BaseNode.param_names + ("tau", "delta_T", "theta_rh", "v_rest")
    arg_checks = {"tau": C.greater(1.0), "delta_T": C.greater(0.0), "theta_rh": C.number,
                  "v_rest": C.number}

    def __init__(self, tau: float = 2.0, delta_T: float = 1.0, theta_rh: float = 0.8,
                 v_threshold: float = 1.0, v_rest: float = 0.0, v_reset: float | None = -0.1,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.tau, self.delta_T, self.theta_rh, self.v_rest = tau, delta_T, theta_rh, v_rest
        _check_reset_order(self)


__all__ = ["AdaptBaseNode", "EIFNode", "IzhikevichNode", "QIFNode"]
