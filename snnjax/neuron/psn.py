"""Parallel Spiking Neurons: ``PSN``, ``MaskedPSN``, ``SlidingPSN`` (SpikingJelly's ``neuron.psn``).

No membrane is carried between steps: the potential of each step is a learnable linear mix of
the inputs along time (one matrix product over time, see :mod:`snnjax.steps.psn`), then one
Heaviside with the bias *added* (``S = sg(W X + b)``; the default bias -1 acts as a threshold of
+1). Multi-step inputs are ``[T, N, *]``; every element after the time axis is an independent
neuron.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.core  # noqa: F401  (jax.core.Tracer below: type checkers need the submodule import)
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax.steps import psn as psn_steps
from snnjax import surrogate as sg
from snnjax.neuron.base import Array, MemoryModule

__all__ = ["AnnealingFactor", "MaskedPSN", "PSN", "SlidingPSN"]


class AnnealingFactor(nnx.Variable):
    """MaskedPSN's non-learnable ``lambda_`` (0-d float32): a state variable, not an ``nnx.Param``,
    so optimisers filtering on ``nnx.Param`` skip it and ``nnx.jit`` traces it (no re-compilation
    when the training loop changes it)."""


def _kaiming_uniform(owner: str, rngs: Any, shape: tuple[int, ...], fan_in: int) -> nnx.Param:
    """``kaiming_uniform_(a=sqrt(5))``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, float32."""
    bound = 1.0 / np.sqrt(fan_in)
    return nnx.Param(jax.random.uniform(C.rngs(owner, "rngs", rngs).params(), shape, jnp.float32,
                                        -bound, bound))


def _check_length(self: Any, x_seq: Any) -> Array:
    """``x_seq[T, N, *]`` with the constructor's ``T``."""
    x_seq = MemoryModule._check_sequence(self, x_seq)
    if x_seq.shape[0] != self.T:
        raise ValueError(f"{type(self).__name__}: x_seq has {x_seq.shape[0]} time steps (shape "
                         f"{tuple(x_seq.shape)}) but T = {self.T} was given at construction; "
                         f"the sequence length must equal T")
    return x_seq


_PSN_CHECKS = {"k": C.positive_int, "T": C.positive_int, "surrogate_function": C.surrogate,
               "exp_init": C.boolean, "method": C.choice(psn_steps.SLIDING_METHODS)}


class PSN(nnx.Module):
    """Parallel Spiking Neuron (multi-step only, non-causal).

    ``H = W X + b 1^T``, ``S = sg(H)`` with ``X = x_seq.reshape(T, M)``:
    ``H[t, m] = sum_j W[t, j] X[j, m] + b[t]``; every output step sees every input step.

    Args:
      T: number of time steps, a positive int (``x_seq.shape[0]`` must equal it) (required).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``ATan()`` (alpha = 2)).
      rngs: ``nnx.Rngs`` drawing ``weight`` (default ``None``; keyword-only).

    Parameters: ``weight`` ``[T, T]`` ~ ``U(-1/sqrt(T), 1/sqrt(T))``, ``bias`` ``[T, 1]`` = -1.
    Shapes: ``[T, N, *] -> [T, N, *]`` (spikes in the input dtype). Like the reference it has no
    ``step_mode`` (``functional.set_step_mode`` skips it) and keeps no state.
    """

    param_names = ("weight", "bias")
    arg_checks = _PSN_CHECKS
    __setattr__, _memory_index = MemoryModule.__setattr__, MemoryModule._memory_index
    params, _params, _check_sequence = MemoryModule.params, MemoryModule._params, _check_length

    def __init__(self, T: int, surrogate_function: Callable = sg.ATan(), *,
                 rngs: nnx.Rngs | None = None):
        self.T, self.surrogate_function = T, surrogate_function
        self.weight = _kaiming_uniform(type(self).__name__, rngs, (self.T, self.T), self.T)
        self.bias = nnx.Param(jnp.full((self.T, 1), -1.0, jnp.float32))

    def init_state(self, x: Any) -> dict:
        """PSN keeps no state: ``{}``."""
        return {}

    def multi_step(self, state: dict, x_seq: Any, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """Pure API: ``(state, x_seq[T, N, *]) -> (state, S[T, N, *])``; ``state`` is passed through.

        ``params`` optionally overrides ``weight`` / ``bias`` (e.g. for ``jax.grad``).
        """
        return state, steps.psn_multi_step(self._check_sequence(x_seq), self._params(params),
                                           surrogate=self.surrogate_function)

    def __call__(self, x_seq: Any) -> Array:
        return self.multi_step({}, x_seq)[1]


class _QueuedPSN(MemoryModule):
    """Shared part of MaskedPSN and SlidingPSN: a queue of the last ``k`` inputs for single-step
    mode (``[k, N, *]``, zeros at first), which multi-step calls neither read nor update (as in
    the reference). Multi-step is one product over time, never a step loop (no ``backend``)."""

    arg_checks = _PSN_CHECKS
    sequence_keys: ClassVar[tuple[str, ...]] = ()   # further static keywords of sequence_fn
    sequence_fn: ClassVar[Callable[..., Array]]      # the whole-sequence function (subclass)

    def __init__(self, k: int, surrogate_function: Callable, step_mode: str):
        super().__init__(step_mode, "scan")
        self.k, self.surrogate_function = k, surrogate_function
        self.register_memory("queue", 0.0, extra_axes=(self.k,))

    def multi_step(self, state: Any, x_seq: Any, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[Any, Array]:
        """Pure API: ``(state, x_seq[T, N, *]) -> (state, S[T, N, *])``.

        One product over time; ``state`` (the single-step queue) is returned unchanged, also with
        ``return_state_seq=True`` (there is no per-step state to record).
        """
        statics = {**self.step_config(), **{k: getattr(self, k) for k in self.sequence_keys}}
        x_seq = self._check_sequence(x_seq)
        if state:   # checked, then passed through unchanged ({}: multi-step needs none)
            self._conform(state, x_seq[0])
        return state, type(self).sequence_fn(x_seq, self._params(params), **statics)

    def __call__(self, x: Any) -> Array:
        """The stateful call; a multi-step call leaves the stored single-step state untouched."""
        if self.step_mode == "s":
            return super().__call__(x)
        x = self._check_sequence(x)
        return self.multi_step(self.init_state(x[0]), x)[1]


class MaskedPSN(_QueuedPSN):
    """Masked PSN: PSN whose mixing matrix is progressively masked to a causal band of width ``k``.

    ``W_eff = W * M_k`` if ``lambda_ >= 1`` else ``(lambda_ M_k + (1 - lambda_) J) * W`` with
    ``M_k[t, j] = 1`` for ``0 <= t - j <= k - 1``; ``S = sg(W_eff X + b)``. The training loop
    anneals ``lambda_`` from 0 (= PSN) to 1 (causal, single-step capable) by assigning
    ``m.lambda_ = value`` (an array is fine; under ``nnx.jit`` it is traced, no re-compilation).

    Args:
      k: band width (order), a positive int ``<= T`` (required).
      T: number of time steps, a positive int (fixed) (required).
      lambda_init: initial annealing factor ``lambda_``, a finite number (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``ATan()`` (alpha = 2)).
      step_mode: ``'s'`` (needs ``lambda_ >= 1``) or ``'m'`` (default ``'s'``).
      rngs: ``nnx.Rngs`` drawing ``weight`` (default ``None``; keyword-only).

    Parameters: ``weight`` ``[T, T]`` ~ ``U(-1/sqrt(T), 1/sqrt(T))``, ``bias`` ``[T, 1]`` = -1.
    Single-step state: ``time_step`` (int32, 0-d) and ``queue`` (last ``k`` inputs,
    ``[k, N, *]``); after ``T`` steps call :meth:`reset`. Errors (``ValueError`` for
    ``lambda_ < 1``, ``OverflowError`` past ``T`` steps) are raised when the values are
    concrete; under ``jax.jit`` such a step returns NaN.
    """

    step_fn = staticmethod(steps.masked_psn_step)
    sequence_fn = staticmethod(steps.masked_psn_multi_step)
    param_names = ("weight", "bias", "lambda_")

    def __init__(self, k: int, T: int, lambda_init: float = 0.0,
                 surrogate_function: Callable = sg.ATan(), step_mode: str = "s", *,
                 rngs: nnx.Rngs | None = None):
        owner = type(self).__name__
        super().__init__(k, surrogate_function, step_mode)
        self.T = T
        C.at_most(owner, "k", self.k, "T", self.T)
        lambda_init = C.number(owner, "lambda_init", lambda_init)
        self.weight = _kaiming_uniform(owner, rngs, (self.T, self.T), self.T)
        self.bias = nnx.Param(jnp.full((self.T, 1), -1.0, jnp.float32))
        self._lambda_ = AnnealingFactor(jnp.asarray(lambda_init, jnp.float32))
        self.register_memory("time_step", 0, per_neuron=False, dtype="int32")

    @property
    def lambda_(self) -> Array:
        """The annealing factor (0-d float32 array); assigning sets the variable (under
        ``nnx.jit`` a traced value, no re-trace)."""
        return self._lambda_.get_value()

    @lambda_.setter
    def lambda_(self, value: Any) -> None:
        value = C.satisfies(lambda v: np.shape(v) == (), "a scalar")(type(self).__name__,
                                                                     "lambda_", value)
        self._lambda_.set_value(jnp.asarray(value, jnp.float32))

    @staticmethod
    def lambda_schedule(step: Any, anneal_steps: int, start_step: int = 0) -> Array:
        """Progressive masking: ``lambda_`` rising linearly from 0 at ``start_step`` to 1 at
        ``start_step + anneal_steps`` (then held at 1), as the MaskedPSN paper's training does.

        The reference builds no schedule in (its training script assigns ``lambda_``); use as
        ``m.lambda_ = MaskedPSN.lambda_schedule(step, anneal_steps)`` inside the training loop
        (``step`` may be traced).
        """
        anneal_steps = C.positive_int("MaskedPSN.lambda_schedule", "anneal_steps", anneal_steps)
        return jnp.clip((jnp.asarray(step, jnp.float32) - start_step) / anneal_steps, 0.0, 1.0)

    @property
    def mask0(self) -> Array:
        """The causal band ``M_k`` (``[T, T]`` float32)."""
        return jnp.asarray(psn_steps.band_mask(self.T, self.k))

    @property
    def mask1(self) -> Array:
        """The all-ones matrix ``J`` (``[T, T]`` float32)."""
        return jnp.ones((self.T, self.T), jnp.float32)

    def masked_weight(self) -> Array:
        """The effective mixing matrix ``W_eff`` for the current ``weight`` and ``lambda_``."""
        return steps.masked_psn_weight(self.weight.get_value(), self.lambda_, k=self.k)

    def step_config(self) -> dict:
        return {"k": self.k, "surrogate": self.surrogate_function}

    def step(self, state: dict, x: Any, params: dict | None = None) -> tuple[dict, Array]:
        """One step of the fully annealed mask (row ``time_step`` of the multi-step product)."""
        owner = type(self).__name__
        lam, t = (None if isinstance(a, jax.core.Tracer) else np.asarray(a)   # traced: NaN
                  for a in (self._params(params)["lambda_"], state["time_step"]))
        if lam is not None and not lam >= 1:
            raise ValueError(f"{owner}: single-step mode needs the mask fully annealed "
                             f"(lambda_ >= 1), got lambda_ = {float(lam)}; use step_mode='m' "
                             f"while lambda_ < 1")
        if t is not None and t >= self.T:
            raise OverflowError(f"{owner}: already ran T = {self.T} single steps "
                                f"(time_step = {int(t)}); call reset() before the next sequence")
        return super().step(state, x, params)

    _check_sequence = _check_length


class SlidingPSN(_QueuedPSN):
    """Sliding PSN: a causal window of the last ``k`` inputs with ``k`` shared weights.

    ``H_t = sum_{i<k} w_i X_{t-k+1+i} + b`` (``X_j = 0`` for ``j < 0``), ``S_t = sg(H_t)``;
    ``w_{k-1}`` weighs the current input. Any sequence length works (also ``T < k``).

    Args:
      k: window length (order), a positive int (required).
      exp_init: ``True``: ``w_i = 2^-(k-1-i)``; ``False``: ``U(-1/sqrt(k), 1/sqrt(k))`` drawn from
        ``rngs`` (default ``True``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``ATan()`` (alpha = 2)).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      rngs: ``nnx.Rngs`` (needed only with ``exp_init=False``) (default ``None``; keyword-only).
      method: how multi-step mixes over time (static): ``'matmul'`` (Toeplitz ``[T, T]`` product),
        ``'conv'`` (causal convolution) or ``'auto'`` (matmul up to T = 256, conv beyond) (default
        ``'auto'``; keyword-only).

    Parameters: ``weight`` ``[k]``, ``bias`` 0-d = -1. Single-step state: ``queue`` (last ``k``
    inputs ``[k, N, *]``, zeros at first); no step limit.
    """

    step_fn = staticmethod(steps.sliding_psn_step)
    sequence_fn = staticmethod(steps.sliding_psn_multi_step)
    sequence_keys = ("method",)
    param_names = ("weight", "bias")

    def __init__(self, k: int, exp_init: bool = True, surrogate_function: Callable = sg.ATan(),
                 step_mode: str = "s", *, rngs: nnx.Rngs | None = None, method: str = "auto"):
        super().__init__(k, surrogate_function, step_mode)
        self.exp_init, self.method = exp_init, method
        self.weight = (nnx.Param(jnp.asarray(psn_steps.exp_init_weight(self.k))) if self.exp_init
                       else _kaiming_uniform(type(self).__name__, rngs, (self.k,), self.k))
        self.bias = nnx.Param(jnp.asarray(-1.0, jnp.float32))

    def gen_gemm_weight(self, T: int) -> Array:
        """The ``[T, T]`` banded Toeplitz matrix of the current ``weight``."""
        T = C.positive_int(type(self).__name__, "T", T)
        return steps.sliding_psn_gemm_weight(self.weight.get_value(), T)

    def step_config(self) -> dict:
        return {"surrogate": self.surrogate_function}
