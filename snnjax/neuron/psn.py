"""Parallel Spiking Neurons: ``PSN``, ``MaskedPSN``, ``SlidingPSN`` (SpikingJelly's ``neuron.psn``).

No membrane is carried between steps: the potential of each step is a learnable linear mix of
the inputs along time (one matrix product over time, see :mod:`snnjax.steps.psn`), then one
Heaviside with the bias *added* (``S = sg(W X + b)``; the default bias -1 acts as a threshold of
+1). Multi-step inputs are ``[T, N, *]``; every element after the time axis is an independent
neuron.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import surrogate as sg
from snnjax.steps import psn as psn_steps
from snnjax.neuron.base import (
    Array, MemoryModule, check_bool, check_choice, check_number, check_surrogate,
)

__all__ = ["AnnealingFactor", "MaskedPSN", "PSN", "SlidingPSN"]


class AnnealingFactor(nnx.Variable):
    """MaskedPSN's non-learnable ``lambda_`` (0-d float32): a state variable, not an ``nnx.Param``,
    so optimisers filtering on ``nnx.Param`` skip it and ``nnx.jit`` traces it (no re-compilation
    when the training loop changes it)."""


# --- helpers ------------------------------------------------------------------------------------

def _check_positive_int(name: str, value: Any, owner: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{owner}: {name} must be a positive int, got {value!r} "
                        f"of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int (>= 1), got {value}")
    return int(value)


def _kaiming_uniform(rngs: nnx.Rngs | None, shape: tuple[int, ...], fan_in: int,
                     owner: str) -> Array:
    """``kaiming_uniform_(a=sqrt(5))``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, float32."""
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"{owner}: rngs must be a flax.nnx.Rngs (e.g. rngs=nnx.Rngs(0)) to draw "
                        f"the initial weight, got {rngs!r}")
    bound = 1.0 / np.sqrt(fan_in)
    return jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound)


def _concrete(value: Any) -> np.ndarray | None:
    """The value as numpy if it is concrete (not traced), else ``None``."""
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _check_sequence(owner: nnx.Module, x_seq: Any, T: int | None = None) -> None:
    MemoryModule._check_sequence(owner, x_seq)
    if T is not None and np.shape(x_seq)[0] != T:
        raise ValueError(f"{type(owner).__name__}: x_seq has {np.shape(x_seq)[0]} time steps "
                         f"(shape {tuple(np.shape(x_seq))}) but T = {T} was given at "
                         f"construction; the sequence length must equal T")


# --- PSN ----------------------------------------------------------------------------------------

class PSN(nnx.Module):
    """Parallel Spiking Neuron (multi-step only, non-causal).

    ``H = W X + b 1^T``, ``S = sg(H)`` with ``X = x_seq.reshape(T, M)``:
    ``H[t, m] = sum_j W[t, j] X[j, m] + b[t]``; every output step sees every input step.

    Args:
      T: number of time steps (fixed; ``x_seq.shape[0]`` must equal it).
      surrogate_function: default ``ATan()`` (alpha = 2).
      rngs: ``nnx.Rngs`` drawing ``weight``.

    Parameters: ``weight`` ``[T, T]`` ~ ``U(-1/sqrt(T), 1/sqrt(T))``, ``bias`` ``[T, 1]`` = -1.
    Shapes: ``[T, N, *] -> [T, N, *]`` (spikes in the input dtype). Like the reference it has no
    ``step_mode`` (``functional.set_step_mode`` skips it) and keeps no state.
    """

    def __init__(self, T: int, surrogate_function: Callable = sg.ATan(), *,
                 rngs: nnx.Rngs | None = None):
        owner = type(self).__name__
        self.T = _check_positive_int("T", T, owner)
        self.surrogate_function = check_surrogate(surrogate_function, owner)
        self.weight = nnx.Param(_kaiming_uniform(rngs, (self.T, self.T), self.T, owner))
        self.bias = nnx.Param(jnp.full((self.T, 1), -1.0, jnp.float32))

    def params(self) -> dict:
        """``{"weight": [T, T], "bias": [T, 1]}`` (current values)."""
        return {"weight": self.weight.get_value(), "bias": self.bias.get_value()}

    def init_state(self, x: Array) -> dict:
        """PSN keeps no state: ``{}``."""
        return {}

    def multi_step(self, state: dict, x_seq: Array, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """Pure API: ``(state, x_seq[T, N, *]) -> (state, S[T, N, *])``; ``state`` is passed through.

        ``params`` optionally overrides ``weight`` / ``bias`` (e.g. for ``jax.grad``).
        """
        _check_sequence(self, x_seq, self.T)
        out = psn_steps.psn_multi_step(x_seq, MemoryModule._params(self, params),
                                       surrogate=self.surrogate_function)
        return state, out

    def __call__(self, x_seq: Array) -> Array:
        return self.multi_step({}, x_seq)[1]


# --- stateful PSNs ------------------------------------------------------------------------------

class _QueuedPSN(MemoryModule):
    """Shared part of MaskedPSN and SlidingPSN: a queue state for single-step mode that multi-step
    calls neither read nor update (as in the reference)."""

    def __init__(self, step_mode: str):
        # the single step is elementwise in the neurons; multi-step never goes through the
        # sequence engines (it is one product over time), so the backend is fixed
        super().__init__(step_mode=step_mode, backend="scan")

    def _multi_step_out(self, x_seq: Array, params: dict) -> Array:
        raise NotImplementedError

    def multi_step(self, state: dict, x_seq: Array, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """Pure API: ``(state, x_seq[T, N, *]) -> (state, S[T, N, *])``.

        One product over time; ``state`` (the single-step queue) is returned unchanged, also with
        ``return_state_seq=True`` (there is no per-step state to record).
        """
        self._check_sequence(x_seq)
        return state, self._multi_step_out(x_seq, self._params(params))

    def multi_step_forward(self, x_seq: Array) -> Array:
        """Stateful multi-step call; leaves the stored single-step state untouched."""
        return self.multi_step({}, x_seq)[1]


class MaskedPSN(_QueuedPSN):
    """Masked PSN: PSN whose mixing matrix is progressively masked to a causal band of width ``k``.

    ``W_eff = W * M_k`` if ``lambda_ >= 1`` else ``(lambda_ M_k + (1 - lambda_) J) * W`` with
    ``M_k[t, j] = 1`` for ``0 <= t - j <= k - 1``; ``S = sg(W_eff X + b)``. The training loop
    anneals ``lambda_`` from 0 (= PSN) to 1 (causal, single-step capable) by assigning
    ``m.lambda_ = value`` (an array is fine; under ``nnx.jit`` it is traced, no re-compilation).

    Args:
      k: band width (order), ``1 <= k <= T``.
      T: number of time steps (fixed).
      lambda_init: initial annealing factor (default 0.0).
      surrogate_function: default ``ATan()``.
      step_mode: ``'s'`` (default, needs ``lambda_ >= 1``) or ``'m'``.
      rngs: ``nnx.Rngs`` drawing ``weight``.

    Parameters: ``weight`` ``[T, T]`` ~ ``U(-1/sqrt(T), 1/sqrt(T))``, ``bias`` ``[T, 1]`` = -1.
    Single-step state: ``time_step`` (int32, 0-d) and ``queue`` (last ``k`` inputs,
    ``[k, N, *]``); after ``T`` steps call :meth:`reset`. Errors (``ValueError`` for
    ``lambda_ < 1``, ``OverflowError`` past ``T`` steps) are raised when the values are
    concrete; under ``jax.jit`` such a step returns NaN.
    """

    def __init__(self, k: int, T: int, lambda_init: float = 0.0,
                 surrogate_function: Callable = sg.ATan(), step_mode: str = "s", *,
                 rngs: nnx.Rngs | None = None):
        owner = type(self).__name__
        super().__init__(step_mode)
        self.k = _check_positive_int("k", k, owner)
        self.T = _check_positive_int("T", T, owner)
        if self.k > self.T:
            raise ValueError(f"{owner}: k must be <= T (the band cannot be wider than the "
                             f"sequence), got k = {self.k}, T = {self.T}")
        lambda_init = check_number("lambda_init", lambda_init, owner)
        self.surrogate_function = check_surrogate(surrogate_function, owner)
        self.weight = nnx.Param(_kaiming_uniform(rngs, (self.T, self.T), self.T, owner))
        self.bias = nnx.Param(jnp.full((self.T, 1), -1.0, jnp.float32))
        self._lambda_ = AnnealingFactor(jnp.asarray(lambda_init, jnp.float32))

    @property
    def lambda_(self) -> Array:
        """The annealing factor (0-d float32 array)."""
        return self._lambda_.get_value()

    @lambda_.setter
    def lambda_(self, value: Any) -> None:
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"{type(self).__name__}: lambda_ must be a scalar, got shape "
                             f"{value.shape}")
        self._lambda_.set_value(value.astype(jnp.float32))

    @staticmethod
    def lambda_schedule(step: Any, anneal_steps: int, start_step: int = 0) -> Array:
        """Progressive masking: ``lambda_`` rising linearly from 0 at ``start_step`` to 1 at
        ``start_step + anneal_steps`` (then held at 1), as the MaskedPSN paper's training does.

        The reference builds no schedule in (its training script assigns ``lambda_``); use as
        ``m.lambda_ = MaskedPSN.lambda_schedule(step, anneal_steps)`` inside the training loop
        (``step`` may be traced).
        """
        if isinstance(anneal_steps, bool) or not isinstance(anneal_steps, int) or anneal_steps < 1:
            raise ValueError(f"MaskedPSN.lambda_schedule: anneal_steps must be a positive int, "
                             f"got {anneal_steps!r}")
        frac = (jnp.asarray(step, jnp.float32) - start_step) / anneal_steps
        return jnp.clip(frac, 0.0, 1.0)

    def __setattr__(self, name: str, value: Any) -> None:
        # NNX would also record ``lambda_`` as a pytree attribute of the module (changing its
        # graph definition and forcing a re-trace); route it straight to the property setter
        if name == "lambda_":
            type(self).lambda_.fset(self, value)
            return
        super().__setattr__(name, value)

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
        return psn_steps.masked_psn_weight(self.weight.get_value(), self.lambda_, k=self.k)

    def params(self) -> dict:
        """``{"weight": [T, T], "bias": [T, 1], "lambda_": 0-d}`` (current values)."""
        return {"weight": self.weight.get_value(), "bias": self.bias.get_value(),
                "lambda_": self.lambda_}

    def init_state(self, x: Array) -> dict:
        return psn_steps.masked_psn_init_state(jnp.asarray(x), k=self.k)

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        owner = type(self).__name__
        lam = _concrete(params["lambda_"])
        if lam is not None and not lam >= 1:
            raise ValueError(f"{owner}: single-step mode needs the mask fully annealed "
                             f"(lambda_ >= 1), got lambda_ = {float(lam)}; use step_mode='m' "
                             f"while lambda_ < 1")
        t = _concrete(state["time_step"])
        if t is not None and t >= self.T:
            raise OverflowError(f"{owner}: already ran T = {self.T} single steps "
                                f"(time_step = {int(t)}); call reset() before the next sequence")
        return psn_steps.masked_psn_step(state, x, params, k=self.k,
                                         surrogate=self.surrogate_function)

    def _multi_step_out(self, x_seq: Array, params: dict) -> Array:
        _check_sequence(self, x_seq, self.T)
        return psn_steps.masked_psn_multi_step(x_seq, params, k=self.k,
                                               surrogate=self.surrogate_function)


class SlidingPSN(_QueuedPSN):
    """Sliding PSN: a causal window of the last ``k`` inputs with ``k`` shared weights.

    ``H_t = sum_{i<k} w_i X_{t-k+1+i} + b`` (``X_j = 0`` for ``j < 0``), ``S_t = sg(H_t)``;
    ``w_{k-1}`` weighs the current input. Any sequence length works (also ``T < k``).

    Args:
      k: window length (order), ``>= 1``.
      exp_init: ``True`` (default): ``w_i = 2^-(k-1-i)``; ``False``:
        ``U(-1/sqrt(k), 1/sqrt(k))`` drawn from ``rngs``.
      surrogate_function: default ``ATan()``.
      step_mode: ``'s'`` (default) or ``'m'``.
      rngs: ``nnx.Rngs`` (needed only with ``exp_init=False``).
      method: keyword-only, static: how multi-step mixes over time: ``'matmul'`` (Toeplitz
        ``[T, T]`` product), ``'conv'`` (causal convolution), ``'auto'`` (matmul up to
        T = 256, conv beyond).

    Parameters: ``weight`` ``[k]``, ``bias`` 0-d = -1. Single-step state: ``queue`` (last ``k``
    inputs ``[k, N, *]``, zeros at first); no step limit.
    """

    def __init__(self, k: int, exp_init: bool = True, surrogate_function: Callable = sg.ATan(),
                 step_mode: str = "s", *, rngs: nnx.Rngs | None = None, method: str = "auto"):
        owner = type(self).__name__
        super().__init__(step_mode)
        self.k = _check_positive_int("k", k, owner)
        self.exp_init = check_bool("exp_init", exp_init, owner)
        self.surrogate_function = check_surrogate(surrogate_function, owner)
        self.method = check_choice("method", method, psn_steps.SLIDING_METHODS, owner)
        if self.exp_init:
            weight = jnp.asarray(psn_steps.exp_init_weight(self.k))
        else:
            weight = _kaiming_uniform(rngs, (1, self.k), self.k, owner)[0]
        self.weight = nnx.Param(weight)
        self.bias = nnx.Param(jnp.asarray(-1.0, jnp.float32))

    def gen_gemm_weight(self, T: int) -> Array:
        """The ``[T, T]`` banded Toeplitz matrix of the current ``weight``."""
        T = _check_positive_int("T", T, type(self).__name__)
        return psn_steps.sliding_psn_gemm_weight(self.weight.get_value(), T)

    def params(self) -> dict:
        """``{"weight": [k], "bias": 0-d}`` (current values)."""
        return {"weight": self.weight.get_value(), "bias": self.bias.get_value()}

    def init_state(self, x: Array) -> dict:
        return psn_steps.sliding_psn_init_state(jnp.asarray(x), k=self.k)

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return psn_steps.sliding_psn_step(state, x, params, surrogate=self.surrogate_function)

    def _multi_step_out(self, x_seq: Array, params: dict) -> Array:
        return psn_steps.sliding_psn_multi_step(x_seq, params, surrogate=self.surrogate_function,
                                                method=self.method)
