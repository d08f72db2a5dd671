"""DSR neurons (SpikingJelly's ``dsr`` module): spiking forward, rate-based backward.

*Training High-Performance Low-Latency Spiking Neural Networks by Differentiation on Spike
Representation* (CVPR 2022). Both classes are multi-step only and keep no state between calls
(every call starts from a zero membrane). The forward/backward pair is one ``jax.custom_vjp``
over the whole sequence (:mod:`snnjax.steps.dsr`), so these modules always run on ``lax.scan``.
Shapes: ``[T, N, *] -> [T, N, *]`` (``T`` fixed at construction), output in the input dtype.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax.neuron.base import Array, MemoryModule


class _DSRNode(MemoryModule):
    """Shared part: the threshold parameter, the checks and the multi-step-only API (a subclass
    sets ``sequence_fn``, its whole-sequence function of :mod:`snnjax.steps.dsr`)."""

    supported_step_modes = ("m",)
    sequence_fn: ClassVar[Callable[..., Array]]   # the whole-sequence function (subclass)
    param_names = ("v_threshold", "alpha", "v_threshold_grad_scaling", "v_threshold_lower_bound")
    arg_checks = {"T": C.length, "v_threshold_lower_bound": C.greater(0.0),
                  "alpha": C.in_range(0.0, 1.0, high_open=False),
                  "v_threshold_training": C.boolean, "v_threshold_grad_scaling": C.number,
                  "tau": C.greater(0.0), "delta_t": C.greater(0.0)}

    def __init__(self, T: int = 20, v_threshold: float = 6.0, alpha: float = 0.5,
                 v_threshold_training: bool = True, v_threshold_grad_scaling: float = 1.0,
                 v_threshold_lower_bound: float = 0.01, step_mode: str = "m"):
        super().__init__(step_mode, "scan")
        self.T, self.v_threshold_lower_bound = T, v_threshold_lower_bound
        v_threshold = C.number(type(self).__name__, "v_threshold", v_threshold)
        C.ordered(type(self).__name__, "v_threshold_lower_bound", self.v_threshold_lower_bound,
                  "v_threshold", v_threshold, strict=False)
        self.alpha, self.v_threshold_training = alpha, v_threshold_training
        self.v_threshold_grad_scaling = v_threshold_grad_scaling
        value = jnp.asarray(v_threshold, jnp.float32)
        # learnable 0-d float32 parameter, or a fixed array that is not a parameter
        self.v_threshold = nnx.Param(value) if self.v_threshold_training else nnx.data(value)

    def step(self, state: dict, x: Any, params: dict | None = None) -> tuple[dict, Array]:
        raise ValueError(f"{type(self).__name__} is multi-step only (step_mode='m'): the "
                         f"rate-based backward needs the whole sequence [T, N, *]")

    def multi_step(self, state: dict, x_seq: Any, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """Whole sequence ``x_seq[T, N, *] -> ({}, y[T, N, *])``; ``T`` must equal ``self.T``."""
        return {}, self.sequence_fn(self._check_sequence(x_seq), self._params(params), T=self.T)

    def __call__(self, x_seq: Any) -> Array:
        out = super().__call__(x_seq)
        if isinstance(self.v_threshold, nnx.Param):
            # the reference clamps its parameter in place at every call
            self.v_threshold.set_value(jax.lax.stop_gradient(steps.clamp_threshold(
                self.v_threshold.get_value(), self.v_threshold_lower_bound)))
        return out


class DSRIFNode(_DSRNode):
    """DSR integrate-and-fire neuron (multi-step only, no state).

    Forward (``theta = max(v_threshold, v_threshold_lower_bound)``, ``m[-1] = 0``)::

        m[t] = m[t-1] + X[t];  y[t] = theta * 1[m[t] >= alpha * theta];  m[t] -= y[t]

    Backward (``custom_vjp``): ``r = mean_t X``, ``Gbar = sum_t G``;
    ``dL/dX[t] = Gbar / T * 1[0 <= r <= theta]``,
    ``dL/dtheta = v_threshold_grad_scaling * sum(Gbar * 1[r > theta])``.

    Args:
      T: sequence length, a positive int (``x_seq.shape[0]`` must equal it) (default ``20``).
      v_threshold: initial threshold, a finite number ``>= v_threshold_lower_bound`` (default
        ``6.0``).
      alpha: firing fraction of the threshold, in ``(0, 1]`` (default ``0.5``).
      v_threshold_training: ``True`` / ``False``: ``v_threshold`` is a learnable 0-d float32
        ``nnx.Param`` (else a fixed array) (default ``True``).
      v_threshold_grad_scaling: factor of ``dL/dtheta``, a finite number (default ``1.0``).
      v_threshold_lower_bound: lower clamp of the threshold, ``> 0`` (default ``0.01``).
      step_mode: ``'m'`` only (``x_seq[T, N, *]``) (default ``'m'``).

    Output values in ``{0, theta}``.
    """

    sequence_fn = staticmethod(steps.dsr_if_sequence)


class DSRLIFNode(_DSRNode):
    """DSR leaky integrate-and-fire neuron (multi-step only, no state).

    Forward with ``b = exp(-delta_t / tau)``::

        m[t] = b m[t-1] + (1 - b) X[t];  z = 1[m[t] >= alpha theta];  m[t] -= theta z;
        y[t] = theta z / delta_t

    Backward (``custom_vjp``) with the weighted rate ``WR(D) = sum_i w_i D_i / sum_i w_i``,
    ``w_i = exp(-(T - i) delta_t / tau)``: ``r = WR(X)``, ``Gbar = T WR(G)``,
    ``B = theta tau / delta_t``; ``dL/dX[t] = Gbar / (tau T) * 1[0 < r < B]``,
    ``dL/dtheta = delta_t * v_threshold_grad_scaling * sum(Gbar * 1[r > B])``.

    Args:
      T: sequence length, a positive int (``x_seq.shape[0]`` must equal it) (default ``20``).
      v_threshold: initial threshold, a finite number ``>= v_threshold_lower_bound`` (default
        ``1.0``).
      tau: time constant, ``> 0`` (the reference does not check it; it divides) (default ``2.0``).
      delta_t: step length, ``> 0`` (it divides) (default ``0.05``).
      alpha: firing fraction of the threshold, in ``(0, 1]`` (default ``0.3``).
      v_threshold_training: ``True`` / ``False``: ``v_threshold`` is a learnable 0-d float32
        ``nnx.Param`` (else a fixed array) (default ``True``).
      v_threshold_grad_scaling: factor of ``dL/dtheta``, a finite number (default ``1.0``).
      v_threshold_lower_bound: lower clamp of the threshold, ``> 0`` (default ``0.1``).
      step_mode: ``'m'`` only (``x_seq[T, N, *]``) (default ``'m'``).
    """

    sequence_fn = staticmethod(steps.dsr_lif_sequence)
    param_names = _DSRNode.param_names + ("tau", "delta_t")

    def __init__(self, T: int = 20, v_threshold: float = 1.0, tau: float = 2.0,
                 delta_t: float = 0.05, alpha: float = 0.3, v_threshold_training: bool = True,
                 v_threshold_grad_scaling: float = 1.0, v_threshold_lower_bound: float = 0.1,
                 step_mode: str = "m"):
        super().__init__(T, v_threshold, alpha, v_threshold_training, v_threshold_grad_scaling,
                         v_threshold_lower_bound, step_mode)
        self.tau, self.delta_t = tau, delta_t


__all__ = ["DSRIFNode", "DSRLIFNode"]
