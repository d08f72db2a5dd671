"""Fire and reset: the two halves of a spiking step shared by every neuron family.

Notation (SpikingJelly's): ``H`` charged membrane, ``S`` spike, ``V`` post-reset membrane,
``theta`` = ``v_threshold``, ``V_r`` = ``v_reset``.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from snnjax.surrogate import propagate_nan

Array = jax.Array
SpikeFn = Callable[[Array], Array]


def state_dtype(x_dtype: Any) -> jnp.dtype:
    """Neuron state is kept in at least float32 (bf16/fp16 inputs get float32 state)."""
    return jnp.promote_types(x_dtype, jnp.float32)


def fire(h: Array, v_threshold: Any, surrogate: SpikeFn) -> Array:
    """``S = sg(H - theta)``: Heaviside forward (fires at equality), surrogate gradient backward."""
    return surrogate(h - v_threshold)


def fire_for_state(h: Array, v_threshold: Any, surrogate: SpikeFn) -> tuple[Array, Array]:
    """``(S_state, S)``: the spike :func:`fire` gives (``S``, NaN where ``H`` is NaN) and the
    same spike without that NaN rule (``S_state``, 0 where ``H`` is NaN) for a state update
    that carries a NaN charge by itself (:func:`reset` saturates ``H`` keeping NaN). A fused
    backward recomputes only ``S_state``, so it does no NaN test. For a surrogate without
    ``spike_for_state`` (a plain function) both are ``fire``'s."""
    d = h - v_threshold
    for_state = getattr(surrogate, "spike_for_state", None)
    if for_state is None:
        spike = surrogate(d)
        return spike, spike
    spike = for_state(d)
    return spike, propagate_nan(d, spike)


@jax.custom_jvp
def _saturate(v: Array) -> Array:
    big = jnp.finfo(v.dtype).max
    # one clamp: NaN-keeping min/max where the lowering has them (XLA, Mosaic); the Triton
    # backend rewrites it into a compare and a select per bound (its min/max drop NaN)
    return jax.lax.clamp(jnp.asarray(-big, v.dtype), v, jnp.asarray(big, v.dtype))


# straight through: the backward needs no pre-saturation value (no extra residual per step);
# the two differ only at +-inf, where no gradient is meaningful
_saturate.defjvp(lambda primals, tangents: (_saturate(*primals), tangents[0]))


def saturate(v: Array) -> Array:
    """``v`` clipped to the finite range of its dtype, NaN kept on every backend: the
    non-finite policy's membrane. An infinite charge fires and resets like a
    huge finite one (no ``0 * inf`` in the reset), and the next step starts from a finite state.
    The gradient passes straight through."""
    if not jnp.issubdtype(v.dtype, jnp.floating):
        return v
    return _saturate(v)


def reset(h: Array, spike: Array, v_threshold: Any, v_reset: Any, *, soft_reset: bool,
          detach_reset: bool) -> Array:
    """Membrane after the spike (``H`` saturated first, see :func:`saturate`).

    hard reset: ``V = S * V_r + (1 - S) * H``;  soft reset: ``V = H - S * theta``.
    With ``detach_reset`` the spike enters this equation without gradient. A NaN ``H`` gives a
    NaN ``V`` whatever ``S`` is (0 from :func:`fire_for_state`, or NaN): the saturation keeps NaN.
    """
    s = jax.lax.stop_gradient(spike) if detach_reset else spike
    h = saturate(h)
    if soft_reset:
        return h - s * v_threshold
    return s * v_reset + (1.0 - s) * h


def fire_and_reset(h: Array, params: dict, *, surrogate: SpikeFn, soft_reset: bool,
                   detach_reset: bool) -> tuple[Array, Array]:
    """Fire from ``H`` then reset; returns ``(V, S)``."""
    for_state, spike = fire_for_state(h, params["v_threshold"], surrogate)
    v = reset(h, for_state, params["v_threshold"], params.get("v_reset", 0.0),
              soft_reset=soft_reset, detach_reset=detach_reset)
    return v, spike


def rest_level(params: dict, soft_reset: bool) -> Any:
    """Leaky neurons decay towards ``V_r`` with hard reset and towards 0 with soft reset."""
    return 0.0 if soft_reset else params["v_reset"]


def cast_out(out: Array, x: Array) -> Array:
    """Spikes leave the step in the input dtype (state stays in float32 or wider)."""
    return out.astype(x.dtype) if out.dtype != x.dtype else out


_BOUNDED_STEPS: dict = {}   # step -> predicate of its statics


def keeps_state_bounded(step: Callable | None = None, *,
                        when: Callable[[dict], bool] | None = None) -> Any:
    """Mark ``step`` as keeping every state variable finite by its own equations (a clamped
    charge, or a hard reset of a saturated charge), for the static configurations where
    ``when(statics)`` holds (always without ``when``): ``BoundStep(finite_state=True)`` then
    adds no second saturation, which in a fused kernel costs registers and time. Usable as
    ``@keeps_state_bounded`` or ``@keeps_state_bounded(when=...)``."""
    def mark(fn: Callable) -> Callable:
        _BOUNDED_STEPS[fn] = when if when is not None else (lambda statics: True)
        return fn
    return mark(step) if step is not None else mark


def hard_reset(statics: dict) -> bool:
    """``V = S V_r + (1 - S) saturate(H)`` is finite (or NaN) already: a finite ``V_r``
    (checked at construction) and a saturated charge."""
    return not statics.get("soft_reset", True)


class BoundStep:
    """A step function with its static (keyword-only) configuration bound, hashable by value.

    ``BoundStep(lif_step, decay_input=True, ...)`` is ``(state, x, params) -> (state, out)``.
    ``finite_state=True`` saturates every float leaf of the new state (:func:`saturate`): the
    library's neurons keep states finite or NaN, never infinite, so the next step has no
    ``inf - inf``; FlexSN's user-written steps keep their own arithmetic.
    Two bindings of the same function with equal statics are equal, so the kernel cache is keyed
    by the step and its configuration, not by the module that asked for it.
    """

    __slots__ = ("fn", "statics", "finite_state", "_key", "__weakref__")   # jax.jit holds a weakref

    def __init__(self, fn: Callable, *, finite_state: bool = False, **statics: Any):
        self.fn = fn
        self.statics = statics
        # saturate the new state (the non-finite policy), unless the step's equations do
        bounded = _BOUNDED_STEPS.get(fn)
        self.finite_state = finite_state and not (bounded is not None and bounded(statics))
        self._key = (fn, finite_state, tuple(sorted(statics.items())))

    def __call__(self, state: Any, x: Any, params: Any) -> tuple[Any, Any]:
        new, out = self.fn(state, x, params, **self.statics)
        if self.finite_state:
            new = jax.tree_util.tree_map(saturate, new)
        return new, out

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoundStep) and self._key == other._key

    @property
    def __name__(self) -> str:  # for the kernel generator's messages
        return getattr(self.fn, "__name__", "step")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.statics.items())
        return f"BoundStep({self.__name__}, {args})"
