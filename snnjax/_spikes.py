"""Compact storage of binary activations for the backward pass (internal).

A layer after a spiking neuron (a convolution's weight gradient, max pooling's backward) keeps
its input for the backward pass. The input is a spike tensor: every value is 0, 1 (or NaN, the
non-finite policy's spike of a NaN membrane), so one byte holds it exactly. This module

* tags, at trace time, the arrays (tracers) that are binary by construction: the output of a
  spiking neuron's stateful call (:func:`mark_neuron_output`; the rule is :func:`binary_output`)
  and of a layer that keeps binary values binary (max pooling, flatten: :func:`tag`);
* runs a layer function on a tagged input so that its backward keeps the input as ``int8``
  instead of the floating tensor (:func:`call_with_int8_input`): the function runs under
  ``jax.checkpoint`` whose policy saves every residual except the decoded input, which the
  backward re-decodes from the ``int8`` copy (one elementwise pass, no recomputed layer).

Encoding (exact): ``0 -> 0``, ``1 -> 1``, ``NaN -> -1``; decoding gives back ``0.0``, ``1.0`` and
NaN in the input's dtype, so values and gradients equal the unoptimised path's (NaN inputs give
NaN gradients in the same places: a NaN's payload is not kept, its NaN-ness is).

The registry maps ``id(array)`` to a weak reference; an entry counts only if the reference still
points to the very same object (``is``), so an id reused after garbage collection never matches.
"""
from __future__ import annotations

import contextlib
import contextvars
import weakref
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

Array = jax.Array
NAME = "snnjax_binary_input"     # checkpoint_name of the decoded input (never saved)

_registry: dict[int, weakref.ref] = {}
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("snnjax_compact_spikes",
                                                              default=True)


@contextlib.contextmanager
def compact_storage(enabled: bool) -> Iterator[None]:
    """Switch compact spike storage on or off for everything traced inside the block (tests,
    benchmarks: the unoptimised path). Acts at trace time, like ``kernels.default_config``."""
    token = _enabled.set(bool(enabled))
    try:
        yield
    finally:
        _enabled.reset(token)


def enabled() -> bool:
    return _enabled.get()


# --- the tags ---------------------------------------------------------------------------------

def _forget(key: int) -> Callable[[Any], None]:
    def callback(_ref: Any) -> None:
        if _registry.get(key) is _ref:
            del _registry[key]
    return callback


def tag(x: Any) -> Any:
    """Mark ``x`` (a JAX array or tracer) as binary: every value 0, 1 or NaN. Returns ``x``."""
    if not enabled() or not isinstance(x, jax.Array) \
            or not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    key = id(x)
    try:
        _registry[key] = weakref.ref(x, _forget(key))
    except TypeError:        # an object without weak references: not tagged (safe)
        pass
    return x


def is_binary(x: Any) -> bool:
    """Whether ``x`` is the very object :func:`tag` marked (and storage is enabled)."""
    if not enabled():
        return False
    ref = _registry.get(id(x))
    return ref is not None and ref() is x


def _spike_steps() -> frozenset:
    from snnjax import steps
    # steps whose output is ``fire(...)`` of the surrogate (cast to the input dtype), nothing else
    names = ("spiking_step", "if_step", "lif_step", "plif_step", "simple_lif_step", "klif_step",
             "cuba_lif_step", "adaptive_step")
    return frozenset(getattr(steps, n) for n in names)   # a renamed step fails loudly here


_SPIKE_STEPS: frozenset | None = None


def binary_output(node: Any) -> bool:
    """The rule: a neuron's output is binary by construction when its step is one of the
    library's spiking steps whose output is the spike itself (IF, LIF, PLIF, the simple nodes,
    KLIF, CUBA-LIF, the adaptive LIF, and a ported ``BaseNode`` with its own
    ``neuronal_charge``), fired by a surrogate in spiking mode whose forward is the library's
    Heaviside (every surrogate except ``MultiLevelSpikeCount``, ``PoissonPass`` and any class
    overriding the spike forward). Not binary: LIAF, non-spiking nodes, PSN family, FlexSN and
    any user ``step_fn``."""
    global _SPIKE_STEPS
    from snnjax.surrogate import SurrogateFunction
    if _SPIKE_STEPS is None:
        _SPIKE_STEPS = _spike_steps()
    step = getattr(type(node), "step_fn", None)
    if step not in _SPIKE_STEPS:
        return False
    sg = getattr(node, "surrogate_function", None)
    return (isinstance(sg, SurrogateFunction) and sg.spiking
            and type(sg)._spike_forward is SurrogateFunction._spike_forward)


def mark_neuron_output(node: Any, out: Any) -> Any:
    """The neuron's stateful-call hook: ``out`` tagged if ``node`` is binary by the rule."""
    return tag(out) if enabled() and binary_output(node) else out


# --- int8 storage -----------------------------------------------------------------------------

def encode(x: Array) -> Array:
    """``0 -> 0``, ``1 -> 1``, ``NaN -> -1`` as ``int8`` (``x`` binary by construction)."""
    return jnp.where(x != x, -1, x).astype(jnp.int8)


def decode(code: Array, dtype: Any) -> Array:
    """Inverse of :func:`encode` in ``dtype`` (``-1 -> NaN``)."""
    # lax primitives (no nested jit): the checkpoint policy sees each operation's operands
    value = jax.lax.convert_element_type(code, dtype)
    nan = jax.lax.full_like(value, np.nan)
    return jax.lax.select(jax.lax.lt(code, jnp.int8(0)), nan, value)


@jax.custom_vjp
def _attach(code: Array, x: Array) -> Array:
    """Value ``decode(code)`` (== ``x``); the cotangent goes to ``x`` unchanged. Its primal
    computation reads only ``code``, so a recomputation never needs ``x``."""
    return decode(code, x.dtype)


def _attach_fwd(code: Array, x: Array) -> tuple[Array, None]:
    return decode(code, x.dtype), None


def _attach_bwd(_: None, g: Array) -> tuple[None, Array]:
    return None, g


_attach.defvjp(_attach_fwd, _attach_bwd)


_COMPACT = (np.dtype(np.int8), np.dtype(np.bool_))


def saving_all_but_input(prim: Any, *avals: Any, **params: Any) -> bool:
    """Checkpoint policy: save every residual except the decoded binary input, i.e. anything
    but the named decoded value and the values computed from the ``int8`` code (the decode's
    comparison, cast and select read an ``int8`` or boolean operand): those are recomputed from
    the code in the backward; broadcasts of a scalar are never worth saving)."""
    if params.get("name") == NAME or getattr(prim, "name", "") in ("remat2", "checkpoint"):
        return False           # ... and a nested checkpoint's outputs: its own policy decides
    if prim is jax.lax.broadcast_in_dim_p and all(np.ndim(a) == 0 or getattr(a, "shape", None)
                                                   == () for a in avals):
        return False           # a filled constant (the decode's NaN): recomputed for free
    return not any(getattr(a, "dtype", None) in _COMPACT for a in avals)


def decoded(code: Array, x: Array) -> Array:
    """Inside a checkpointed function: the binary input rebuilt from its ``int8`` code, named
    so that the policy does not save it, and tagged (it is binary)."""
    return tag(checkpoint_name(_attach(code, x), NAME))
