"""Adaptive and nonlinear IF modules (SpikingJelly's ``neuron.adapt`` and ``neuron.nonlinear_if``).

``AdaptBaseNode``, ``IzhikevichNode``, ``QIFNode``, ``EIFNode``. The mathematics lives in
:mod:`snnjax.steps.adaptive` (including the overflow guard of the quadratic and exponential
charges: the charged potential is clamped to ``[-B, B]``, ``B = sqrt(finfo.max) / 4``).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from snnjax import steps
from snnjax.neuron.base import Array, BaseNode, check_greater, check_number
from snnjax.steps import adaptive as adaptive_steps


class AdaptBaseNode(BaseNode):
    """Base of the spiking neurons with an adaptation variable ``w`` (SpikingJelly's ``AdaptBaseNode``).

    Subclass and define ``neuronal_charge(v, x, params, w) -> H``; this class supplies the rest of
    the step (:func:`snnjax.steps.adaptive.adaptive_step`):
    ``S = sg(H - v_threshold)``, ``W' = W + (a (H - v_rest) - W) / tau_w + b S``, ``V' = reset(H, S)``.
    Override :meth:`neuronal_adaptation` for another subthreshold adaptation.

    State: ``v`` (initial ``v_reset``, 0 with soft reset) and ``w`` (initial ``w_rest``).
    Calling ``AdaptBaseNode`` itself raises ``NotImplementedError`` (it has no charge), as in the
    reference. Shapes: ``step_mode='s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
    """

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0, v_rest: float = 0.0,
                 w_rest: float = 0.0, tau_w: float = 2.0, a: float = 0.0, b: float = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.v_rest = check_number("v_rest", v_rest, owner)
        self.w_rest = check_number("w_rest", w_rest, owner)
        # tau_w divides: 0 would silently give inf/NaN (the reference does not check)
        self.tau_w = check_number("tau_w", tau_w, owner)
        if self.tau_w == 0.0:
            raise ValueError(f"{owner}: tau_w must be non-zero (it divides the adaptation), got 0.0")
        self.a = check_number("a", a, owner)
        self.b = check_number("b", b, owner)

    def params(self) -> dict:
        return {**super().params(), "v_rest": self.v_rest, "tau_w": self.tau_w, "a": self.a,
                "b": self.b}

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        dtype = steps.state_dtype(x.dtype)
        return {"v": jnp.full(x.shape, self._initial_v(), dtype),
                "w": jnp.full(x.shape, self.w_rest, dtype)}

    def neuronal_charge(self, v: Array, x: Array, params: dict, w: Array) -> Array:  # type: ignore[override]
        """The charge ``H = f(V[t-1], X[t], W[t-1])``; subclasses must define it."""
        raise NotImplementedError(
            f"{type(self).__name__} must define neuronal_charge(v, x, params, w); AdaptBaseNode "
            f"has no dynamics of its own (use IzhikevichNode or subclass it)")

    def neuronal_adaptation(self, w: Array, h: Array, params: dict) -> Array:
        """Subthreshold adaptation ``W + (a (H - v_rest) - W) / tau_w`` (the ``b S`` jump is added after)."""
        return adaptive_steps.adaptation_update(w, h, params)

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return adaptive_steps.adaptive_step(
            state, x, params, charge=self.neuronal_charge, adaptation=self.neuronal_adaptation,
            surrogate=self.surrogate_function, soft_reset=self.soft_reset,
            detach_reset=self.detach_reset)


class IzhikevichNode(AdaptBaseNode):
    """Izhikevich neuron: quadratic charge with a spike-triggered, subthreshold-coupled recovery ``w``.

    ``H = V + (X + a0 (V - v_rest)(V - v_c) - W) / tau``, ``S = sg(H - v_threshold)``,
    ``W' = W + (a (H - v_rest) - W) / tau_w + b S`` (pre-reset ``H``; the ``b S`` term keeps its
    surrogate gradient even with ``detach_reset``), ``V' = reset(H, S)``.
    Initial ``v = v_reset`` (0 by default, not ``v_rest``; 0 with soft reset), ``w = w_rest``.
    ``tau`` must be > 1 and ``a0`` > 0. Shapes as :class:`AdaptBaseNode`.
    """

    def __init__(self, tau: float = 2.0, v_c: float = 0.8, a0: float = 1.0,
                 v_threshold: float = 1.0, v_reset: float | None = 0.0, v_rest: float = -0.1,
                 w_rest: float = 0.0, tau_w: float = 2.0, a: float = 0.0, b: float = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, v_rest, w_rest, tau_w, a, b, surrogate_function,
                         detach_reset, step_mode, store_v_seq, backend=backend)
        self.tau = check_greater("tau", tau, 1.0, owner)
        self.v_c = check_number("v_c", v_c, owner)
        self.a0 = check_greater("a0", a0, 0.0, owner)

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau, "v_c": self.v_c, "a0": self.a0}

    def neuronal_charge(self, v: Array, x: Array, params: dict, w: Array) -> Array:
        return adaptive_steps.izhikevich_charge(v, x, params, w)


def _check_reset_order(owner: str, v_threshold: float, v_rest: float, v_reset: float | None) -> None:
    if v_reset is None:
        return
    if not v_threshold > v_reset:
        raise ValueError(f"{owner}: v_threshold must be > v_reset, got v_threshold={v_threshold}, "
                         f"v_reset={v_reset}")
    if not v_rest >= v_reset:
        raise ValueError(f"{owner}: v_rest must be >= v_reset, got v_rest={v_rest}, "
                         f"v_reset={v_reset}")


class QIFNode(BaseNode):
    """Quadratic integrate-and-fire neuron.

    ``H = V + (X + a0 (V - v_rest)(V - v_c)) / tau``, ``S = sg(H - v_threshold)``,
    ``V' = reset(H, S)``. Note the argument order (``v_rest`` before ``v_reset``) and the default
    ``v_reset=-0.1``, which is also the initial membrane (0 with soft reset). ``tau`` > 1, ``a0`` > 0,
    and with hard reset ``v_threshold > v_reset`` and ``v_rest >= v_reset``.
    Shapes: ``step_mode='s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
    """

    def __init__(self, tau: float = 2.0, v_c: float = 0.8, a0: float = 1.0,
                 v_threshold: float = 1.0, v_rest: float = 0.0, v_reset: float | None = -0.1,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.tau = check_greater("tau", tau, 1.0, owner)
        self.v_c = check_number("v_c", v_c, owner)
        self.a0 = check_greater("a0", a0, 0.0, owner)
        self.v_rest = check_number("v_rest", v_rest, owner)
        _check_reset_order(owner, self.v_threshold, self.v_rest, self.v_reset)

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau, "v_c": self.v_c, "a0": self.a0,
                "v_rest": self.v_rest}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return adaptive_steps.qif_charge(v, x, params)


class EIFNode(BaseNode):
    """Exponential integrate-and-fire neuron.

    ``H = V + (X + v_rest - V + delta_T exp((V - theta_rh) / delta_T)) / tau``,
    ``S = sg(H - v_threshold)``, ``V' = reset(H, S)``. Defaults and checks as :class:`QIFNode`
    (``v_reset=-0.1`` is also the initial membrane), ``delta_T`` > 0. The exponent is capped at
    ``log(B)`` and ``H`` clamped to ``[-B, B]`` (no inf/NaN; see :mod:`snnjax.steps.adaptive`).
    """

    def __init__(self, tau: float = 2.0, delta_T: float = 1.0, theta_rh: float = 0.8,
                 v_threshold: float = 1.0, v_rest: float = 0.0, v_reset: float | None = -0.1,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.tau = check_greater("tau", tau, 1.0, owner)
        self.delta_T = check_greater("delta_T", delta_T, 0.0, owner)
        self.theta_rh = check_number("theta_rh", theta_rh, owner)
        self.v_rest = check_number("v_rest", v_rest, owner)
        _check_reset_order(owner, self.v_threshold, self.v_rest, self.v_reset)

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau, "delta_T": self.delta_T,
                "theta_rh": self.theta_rh, "v_rest": self.v_rest}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return adaptive_steps.eif_charge(v, x, params)


__all__ = ["AdaptBaseNode", "EIFNode", "IzhikevichNode", "QIFNode"]
