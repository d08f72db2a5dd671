"""DSR neurons (SpikingJelly's ``dsr`` module): spiking forward, rate-based backward.

*Training High-Performance Low-Latency Spiking Neural Networks by Differentiation on Spike
Representation* (CVPR 2022). Both classes are multi-step only and keep no state between calls
(every call starts from a zero membrane). The forward/backward pair is one ``jax.custom_vjp``
over the whole sequence (:mod:`snnjax.steps.dsr`), so these modules always run on ``lax.scan``.
"""
from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax.neuron.base import (
    Array, MemoryModule, check_bool, check_greater, check_number,
)
from snnjax.steps.dsr import clamp_threshold, dsr_if_sequence, dsr_lif_sequence


def _check_T(T: Any, owner: str) -> int:
    if isinstance(T, bool) or not isinstance(T, numbers.Integral) or T < 1:
        raise ValueError(f"{owner}: T must be a positive int (the sequence length), got {T!r}")
    return int(T)


class _DSRNode(MemoryModule):
    """Shared machinery: threshold parameter, argument checks and the multi-step-only API."""

    supported_step_modes = ("m",)

    def _setup(self, T: Any, v_threshold: Any, alpha: Any, v_threshold_training: Any,
               v_threshold_grad_scaling: Any, v_threshold_lower_bound: Any,
               step_mode: str) -> None:
        owner = type(self).__name__
        super().__init__(step_mode=step_mode, backend="scan")
        self.T = _check_T(T, owner)
        self.v_threshold_lower_bound = check_greater("v_threshold_lower_bound",
                                                     v_threshold_lower_bound, 0.0, owner)
        v_threshold = check_number("v_threshold", v_threshold, owner)
        if v_threshold < self.v_threshold_lower_bound:
            raise ValueError(f"{owner}: v_threshold must be >= v_threshold_lower_bound "
                             f"({self.v_threshold_lower_bound}), got {v_threshold}")
        alpha = check_number("alpha", alpha, owner)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"{owner}: alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.v_threshold_training = check_bool("v_threshold_training", v_threshold_training,
                                               owner)
        self.v_threshold_grad_scaling = check_number("v_threshold_grad_scaling",
                                                     v_threshold_grad_scaling, owner)
        value = jnp.asarray(v_threshold, jnp.float32)
        # learnable 0-d float32 parameter, or a fixed array that is not a parameter
        self.v_threshold = nnx.Param(value) if self.v_threshold_training else nnx.data(value)

    def _threshold_value(self) -> Array:
        vt = self.v_threshold
        return vt.get_value() if isinstance(vt, nnx.Variable) else vt

    def params(self) -> dict:
        return {"v_threshold": self._threshold_value(), "alpha": self.alpha,
                "v_threshold_grad_scaling": self.v_threshold_grad_scaling,
                "v_threshold_lower_bound": self.v_threshold_lower_bound}

    def init_state(self, x: Array) -> dict:
        """No state: DSR neurons restart from a zero membrane on every call."""
        return {}

    def single_step_functional(self, state: dict, x: Any, params: dict):
        raise ValueError(f"{type(self).__name__} is multi-step only (step_mode='m'): the "
                         f"rate-based backward needs the whole sequence [T, N, *]")

    def _sequence(self, x_seq: Array, params: dict) -> Array:
        raise NotImplementedError

    def multi_step(self, state: dict, x_seq: Array, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """Whole sequence ``x_seq[T, N, *] -> ({}, y[T, N, *])``; ``T`` must equal ``self.T``."""
        self._check_sequence(x_seq)
        return {}, self._sequence(jnp.asarray(x_seq), self._params(params))

    def multi_step_forward(self, x_seq: Array) -> Array:
        out = super().multi_step_forward(x_seq)
        if isinstance(self.v_threshold, nnx.Param):
            # the reference clamps its parameter in place at every call
            self.v_threshold.set_value(jax.lax.stop_gradient(clamp_threshold(
                self.v_threshold.get_value(), self.v_threshold_lower_bound)))
        return out


class DSRIFNode(_DSRNode):
    """DSR integrate-and-fire neuron (multi-step only, no state).

    Forward (``theta = max(v_threshold, v_threshold_lower_bound)``, ``m[-1] = 0``)::

        m[t] = m[t-1] + X[t];  y[t] = theta * 1[m[t] >= alpha * theta];  m[t] -= y[t]

    Backward (``custom_vjp``): ``r = mean_t X``, ``Gbar = sum_t G``;
    ``dL/dX[t] = Gbar / T * 1[0 <= r <= theta]``,
    ``dL/dtheta = v_threshold_grad_scaling * sum(Gbar * 1[r > theta])``.

    Input ``[T, N, *]`` with ``T`` = the constructor's ``T``; output ``[T, N, *]`` in the input
    dtype, values in ``{0, theta}``. ``v_threshold`` is a 0-d float32 ``nnx.Param`` when
    ``v_threshold_training`` (else a fixed array).
    """

    def __init__(self, T: int = 20, v_threshold: float = 6.0, alpha: float = 0.5,
                 v_threshold_training: bool = True, v_threshold_grad_scaling: float = 1.0,
                 v_threshold_lower_bound: float = 0.01, step_mode: str = "m"):
        self._setup(T, v_threshold, alpha, v_threshold_training, v_threshold_grad_scaling,
                    v_threshold_lower_bound, step_mode)

    def _sequence(self, x_seq: Array, params: dict) -> Array:
        return dsr_if_sequence(x_seq, params, T=self.T)


class DSRLIFNode(_DSRNode):
    """DSR leaky integrate-and-fire neuron (multi-step only, no state).

    Forward with ``b = exp(-delta_t / tau)``::

        m[t] = b m[t-1] + (1 - b) X[t];  z = 1[m[t] >= alpha theta];  m[t] -= theta z;
        y[t] = theta z / delta_t

    Backward (``custom_vjp``) with the weighted rate ``WR(D) = sum_i w_i D_i / sum_i w_i``,
    ``w_i = exp(-(T - i) delta_t / tau)``: ``r = WR(X)``, ``Gbar = T WR(G)``,
    ``B = theta tau / delta_t``; ``dL/dX[t] = Gbar / (tau T) * 1[0 < r < B]``,
    ``dL/dtheta = delta_t * v_threshold_grad_scaling * sum(Gbar * 1[r > B])``.

    Input ``[T, N, *]`` with ``T`` = the constructor's ``T``; output in the input dtype.
    """

    def __init__(self, T: int = 20, v_threshold: float = 1.0, tau: float = 2.0,
                 delta_t: float = 0.05, alpha: float = 0.3, v_threshold_training: bool = True,
                 v_threshold_grad_scaling: float = 1.0, v_threshold_lower_bound: float = 0.1,
                 step_mode: str = "m"):
        owner = type(self).__name__
        self._setup(T, v_threshold, alpha, v_threshold_training, v_threshold_grad_scaling,
                    v_threshold_lower_bound, step_mode)
        # the reference does not check these; both divide, so they must be positive
        self.tau = check_greater("tau", tau, 0.0, owner)
        self.delta_t = check_greater("delta_t", delta_t, 0.0, owner)

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau, "delta_t": self.delta_t}

    def _sequence(self, x_seq: Array, params: dict) -> Array:
        return dsr_lif_sequence(x_seq, params, T=self.T)


__all__ = ["DSRIFNode", "DSRLIFNode"]
