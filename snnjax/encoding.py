"""Spike encoders (SpikingJelly's ``activation_based.encoding`` counterparts).

* :class:`PoissonEncoder` (stateless): ``S = 1[U <= x]``, ``U ~ U[0, 1)``, a fresh draw per call.
* Stateful encoders, which encode their input once and then emit one step per call,
  ``spike[t mod T]`` (SpikingJelly's ``StatefulEncoder``): :class:`PeriodicEncoder`,
  :class:`LatencyEncoder`, :class:`WeightedPhaseEncoder`. Each also has a pure
  ``encode(x) -> [T, *x.shape]`` for the whole period, which is what a JAX program normally
  wants (``x_seq = encoder.encode(x)`` then a multi-step network).

Input ranges are checked on concrete input (``ValueError``). Inside ``jax.jit`` the values are
unknown at trace time, so nothing can be checked; what each encoder then does with
out-of-range values is stated in its docstring.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.core  # noqa: F401  (jax.core.Tracer below: type checkers need the submodule import)
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import _checks as C
from snnjax.neuron.base import STEP_MODES, MemoryModule

Array = jax.Array


def _concrete(x: Any) -> np.ndarray | None:
    """``x`` as NumPy if its values are known now (not a tracer), else ``None``."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _check_range(owner: str, x: Any, low: float, high: float, text: str) -> None:
    v = _concrete(x)
    if v is None or v.size == 0:
        return
    if not (np.all(v >= low) and np.all(v <= high)):   # NaN fails too
        finite = v[~np.isnan(v)]
        seen = f"[{finite.min()}, {finite.max()}]" if finite.size else "none but NaN"
        raise ValueError(f"{owner}: input values must be in {text}, got values in {seen}"
                         + (" and NaN" if np.isnan(v).any() and finite.size else ""))


def _float_input(owner: str, x: Any) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


class PoissonEncoder(nnx.Module):
    """Poisson (Bernoulli-per-step) encoder: ``S = 1[U <= x]``, ``U ~ U[0, 1)`` i.i.d., so
    ``P(S = 1) = x`` (SpikingJelly's ``PoissonEncoder``).

    Stateless: every call draws anew; the output has the shape and (floating) dtype of ``x``
    in both step modes (for ``'m'``, pass ``x`` repeated over ``T``, or use :meth:`encode`).

    Args:
      step_mode: ``'s'`` or ``'m'`` (no effect on the computation, kept for ``set_step_mode``).
      rngs: ``nnx.Rngs`` (stream ``'encoder'``, else ``'default'``) or an ``nnx.RngStream``
        (keyword-only); or pass ``key=`` to each call.

    Input range ``0 <= x <= 1``: concrete input outside it raises ``ValueError``; traced input
    is not checked and behaves as ``clip(x, 0, 1)`` (``x < 0`` never fires, ``x >= 1`` always).
    """

    def __init__(self, step_mode: str = "s", *, rngs: nnx.Rngs | nnx.RngStream | None = None):
        owner = type(self).__name__
        self.step_mode = C.choice(STEP_MODES)(owner, "step_mode", step_mode)
        rngs = C.optional_rngs(owner, "rngs", rngs)
        self.rngs = nnx.data(None if rngs is None else (
            rngs["encoder"] if isinstance(rngs, nnx.Rngs) else rngs).fork())

    def _key(self, key: Array | None) -> Array:
        if key is not None:
            return key
        if self.rngs is None:
            raise ValueError(f"{type(self).__name__}: no PRNG key: construct it with "
                             f"rngs=nnx.Rngs(...) or pass key=...")
        return self.rngs()

    def __call__(self, x: Any, *, key: Array | None = None) -> Array:
        """One draw of the shape of ``x``."""
        owner = type(self).__name__
        x = _float_input(owner, x)
        _check_range(owner, x, 0.0, 1.0, "[0, 1]")
        u = jax.random.uniform(self._key(key), x.shape, jnp.float32)
        return (u <= x.astype(jnp.float32)).astype(x.dtype)

    def encode(self, x: Any, T: int, *, key: Array | None = None) -> Array:
        """``T`` independent draws: ``[T, *x.shape]``."""
        T = C.positive_int(type(self).__name__, "T", T)
        x = _float_input(type(self).__name__, x)
        return self(jnp.broadcast_to(x, (T,) + x.shape), key=key)


class StatefulEncoder(MemoryModule):
    """Base of the encoders that encode once and emit one step per call.

    The first call after construction or ``reset_net`` computes ``spike = encode(x)``
    (``[T, *]``); call number ``k`` (counting from 0) returns ``spike[k mod T]``. In
    ``step_mode='m'`` a call on ``x_seq[T', *]`` encodes ``x_seq[0]`` (if nothing is encoded yet)
    and returns ``spike[(k + i) mod T]`` for ``i < T'``, as the reference's loop of single steps.
    ``spike``, the counter ``t`` and the flag ``encoded`` are declared state
    (:func:`snnjax.functional.reset_net` clears them).

    Args:
      T: the period, an int ``>= 1``.
      step_mode: ``'s'`` or ``'m'``.
    """

    recorded = ()
    arg_checks = {"T": C.positive_int}

    def __init__(self, T: int, step_mode: str = "s"):
        super().__init__(step_mode)
        self.T = T
        self.register_memory("spike", 0.0, extra_axes=self._spike_axes())
        self.register_memory("t", 0.0, per_neuron=False, dtype="int32")
        self.register_memory("encoded", 0.0, per_neuron=False, dtype="int32")

    def _spike_axes(self) -> tuple[int, ...]:
        return (self.T,)

    def encode(self, x: Any) -> Array:
        """The whole period, ``[T, *x.shape]`` (pure; checks concrete input)."""
        raise NotImplementedError

    def _validate(self, x: Any) -> Array:
        return _float_input(type(self).__name__, x)

    def step(self, state: dict, x: Any) -> tuple[dict, Array]:
        """``(state, x[*]) -> (state, spike[t mod T])`` (pure)."""
        x = self._validate(x)
        state = self._conform(state, x)
        spike = jax.lax.cond(state["encoded"] > 0, lambda: state["spike"],
                             lambda: self.encode(x).astype(state["spike"].dtype))
        t = state["t"]
        out = jax.lax.dynamic_index_in_dim(spike, t, 0, keepdims=False)
        new = {"spike": spike, "t": (t + 1) % spike.shape[0], "encoded": jnp.ones((), jnp.int32)}
        return new, out.astype(x.dtype)

    def multi_step(self, state: dict, x_seq: Any, *, return_state_seq: bool = False
                   ) -> tuple[dict, Array]:
        """``(state, x_seq[T', *]) -> (state, [T', *])``: the single step over ``x_seq``."""
        x_seq = self._check_sequence(x_seq)
        outs = []
        for i in range(x_seq.shape[0]):
            state, out = self.step(state, x_seq[i])
            outs.append(out)
        return state, jnp.stack(outs)

    def single_step_forward(self, x: Any) -> Array:
        self._require("s")
        x = self._validate(x)
        state, out = self.step(self.stored_state(x), x)
        self.state = state
        return out

    def multi_step_forward(self, x_seq: Any) -> Array:
        self._require("m")
        x_seq = self._check_sequence(x_seq)
        state, out = self.multi_step(self.stored_state(x_seq[0]), x_seq)
        self.state = state
        return out


class PeriodicEncoder(StatefulEncoder):
    """Periodic encoder: call ``k`` returns ``spike[k mod T]`` (SpikingJelly's
    ``PeriodicEncoder``).

    As in the reference, the pattern is the *call's* input: the first call stores
    ``x = spike[T, *]`` and returns ``spike[0]``, later calls return the next steps (their
    input is ignored until ``reset_net``); the period is the stored pattern's first axis. The
    constructor's ``spike`` sets ``T``.

    Args:
      spike: a pattern ``[T, *]`` (only its length is used), ``T >= 1``.
      step_mode: ``'s'`` (a call takes the pattern ``[T, *]`` and returns ``[*]``) or ``'m'``
        (a call on ``[T', T, *]`` returns ``[T', *]``).
    """

    def __init__(self, spike: Any, step_mode: str = "s"):
        shape = np.shape(spike)
        if len(shape) < 1:
            raise ValueError(f"{type(self).__name__}: spike must be a pattern [T, *], got a "
                             f"0-d value")
        if shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: spike must have T >= 1 steps, got shape "
                             f"{shape}")
        super().__init__(int(shape[0]), step_mode)

    def _spike_axes(self) -> tuple[int, ...]:
        return ()

    def _validate(self, x: Any) -> Array:
        x = _float_input(type(self).__name__, x)
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: input must be a pattern [T, *] with "
                             f"T >= 1, got shape {x.shape}")
        return x

    def encode(self, x: Any) -> Array:
        """The pattern itself: ``spike[T, *] -> spike``."""
        return self._validate(x)


class LatencyEncoder(StatefulEncoder):
    """Latency (time-to-first-spike) encoder: one spike per input at step ``t_f(x)``, larger
    ``x`` earlier (SpikingJelly's ``LatencyEncoder``).

    ``'linear'``: ``t_f = round((T - 1)(1 - x))``; ``'log'``:
    ``t_f = round(T - 1 - ln(alpha x + 1))`` with ``alpha = e^(T - 1) - 1`` (so ``t_f(0) = T - 1``,
    ``t_f(1) = 0``); ``spike[t] = 1[t = t_f]``. ``round`` is to nearest, ties to even (as
    ``torch.round``).

    Args:
      T: number of steps (latest firing time ``T - 1``), ``>= 1``.
      enc_function: ``'linear'`` or ``'log'``.
      step_mode: ``'s'`` or ``'m'``.

    Input range ``0 <= x <= 1``: concrete input outside it raises ``ValueError``; traced input is
    clipped to ``[0, 1]`` (the reference fails inside ``one_hot``).
    """

    arg_checks = {**StatefulEncoder.arg_checks, "enc_function": C.choice(("linear", "log"))}

    def __init__(self, T: int, enc_function: str = "linear", step_mode: str = "s"):
        super().__init__(T, step_mode)
        self.enc_function = enc_function
        self.alpha = math.exp(self.T - 1.0) - 1.0 if enc_function == "log" else None

    def _validate(self, x: Any) -> Array:
        x = _float_input(type(self).__name__, x)
        _check_range(type(self).__name__, x, 0.0, 1.0, "[0, 1]")
        return x

    def firing_time(self, x: Any) -> Array:
        """``t_f(x)`` as int32 (same shape as ``x``)."""
        x = jnp.clip(self._validate(x).astype(jnp.float32), 0.0, 1.0)
        if self.enc_function == "log":
            t = (self.T - 1.0) - jnp.log(self.alpha * x + 1.0)
        else:
            t = (self.T - 1.0) * (1.0 - x)
        return jnp.clip(jnp.round(t), 0, self.T - 1).astype(jnp.int32)

    def encode(self, x: Any) -> Array:
        """``[T, *x.shape]`` one-hot over time at ``t_f(x)``."""
        x = self._validate(x)
        t_f = self.firing_time(x)
        steps = jnp.arange(self.T).reshape((self.T,) + (1,) * x.ndim)
        return (steps == t_f[None]).astype(x.dtype)


class WeightedPhaseEncoder(StatefulEncoder):
    """Weighted phase encoder: the first ``K`` binary digits of ``x``, most significant first
    (SpikingJelly's ``WeightedPhaseEncoder``; Kim et al., 2018).

    ``r_0 = x``; for ``i = 0 .. K-1``: ``spike[i] = 1[r_i >= 2^-(i+1)]``,
    ``r_{i+1} = r_i - 2^-(i+1) spike[i]``; so ``x = sum_i 2^-(i+1) spike[i] + r_K``. Computed in
    the input's float dtype (at least float32), as the reference in float32.

    Args:
      K: number of phases (the period), ``>= 1``.
      step_mode: ``'s'`` or ``'m'``.

    Input range ``0 <= x <= 1 - 2^-K``: concrete input outside it raises ``ValueError`` (the
    reference asserts); traced input is not checked (``x < 0`` gives no spikes, larger values
    saturate to all ones).
    """

    def __init__(self, K: int, step_mode: str = "s"):
        super().__init__(C.positive_int(type(self).__name__, "K", K), step_mode)

    @property
    def K(self) -> int:
        return self.T

    def _validate(self, x: Any) -> Array:
        x = _float_input(type(self).__name__, x)
        _check_range(type(self).__name__, x, 0.0, 1.0 - 2.0 ** (-self.T),
                     f"[0, 1 - 2^-{self.T}]")
        return x

    def encode(self, x: Any) -> Array:
        """``[K, *x.shape]`` binary digits."""
        x = self._validate(x)
        r = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        out, w = [], 0.5
        for _ in range(self.T):
            s = (r >= w).astype(r.dtype)
            r = r - w * s
            out.append(s)
            w *= 0.5
        return jnp.stack(out).astype(x.dtype)


__all__ = ["LatencyEncoder", "PeriodicEncoder", "PoissonEncoder", "StatefulEncoder",
           "WeightedPhaseEncoder"]
