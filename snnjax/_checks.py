"""Argument checks: the one place where constructor and attribute values are validated.

Every check has the signature ``check(owner, name, value) -> value`` (``owner`` is the class name
used in the message) and raises ``TypeError`` for a value of the wrong type or ``ValueError`` for
a value out of range, with one message style: ``"<Class>: <arg> must be <allowed>, got <value>"``.
Neuron modules list their checks in a class attribute ``arg_checks = {"tau": ...}``; the same
check runs at construction and whenever the attribute is reassigned (``node.tau = 4.0``).
"""
from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Check = Callable[[str, str, Any], Any]


def _fail(exc: type, owner: str, name: str, allowed: str, value: Any) -> None:
    raise exc(f"{owner}: {name} must be {allowed}, got {value!r}")


def number(owner: str, name: str, value: Any) -> float:
    """A finite real number (``bool`` is not a number here); returned as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        _fail(TypeError, owner, name, "a real number (int or float)", value)
    value = float(value)
    if not np.isfinite(value):
        _fail(ValueError, owner, name, "finite", value)
    return value


def optional_number(owner: str, name: str, value: Any) -> float | None:
    return None if value is None else number(owner, name, value)


def greater(bound: float) -> Check:
    """A finite number ``> bound``."""
    def check(owner: str, name: str, value: Any) -> float:
        value = number(owner, name, value)
        if not value > bound:
            _fail(ValueError, owner, name, f"> {bound}", value)
        return value
    return check


def at_least(bound: float) -> Check:
    """A finite number ``>= bound``."""
    def check(owner: str, name: str, value: Any) -> float:
        value = number(owner, name, value)
        if not value >= bound:
            _fail(ValueError, owner, name, f">= {bound}", value)
        return value
    return check


def nonzero(owner: str, name: str, value: Any) -> float:
    value = number(owner, name, value)
    if value == 0.0:
        _fail(ValueError, owner, name, "non-zero (it divides)", value)
    return value


def in_range(low: float, high: float, *, low_open: bool = True, high_open: bool = True) -> Check:
    """A finite number in the interval (``low_open``/``high_open`` choose the bracket kinds)."""
    text = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(owner: str, name: str, value: Any) -> float:
        value = number(owner, name, value)
        if (value <= low if low_open else value < low) or (value >= high if high_open
                                                         else value > high):
            _fail(ValueError, owner, name, text, value)
        return value
    return check


def boolean(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(TypeError, owner, name, "True or False", value)
    return bool(value)


def positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        _fail(TypeError, owner, name, "a positive int", value)
    if value < 1:
        _fail(ValueError, owner, name, "a positive int (>= 1)", value)
    return int(value)


def positive_int_or_true(owner: str, name: str, value: Any) -> int | bool:
    """A count, or ``True`` for 'all' (``lax.scan``'s ``unroll``)."""
    if value is True:
        return True
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        _fail(TypeError, owner, name, "a positive int or True", value)
    if value < 1:
        _fail(ValueError, owner, name, "a positive int or True (an int >= 1)", value)
    return int(value)


def optional_positive_int(owner: str, name: str, value: Any) -> int | None:
    return None if value is None else positive_int(owner, name, value)


def int_at_least(low: int) -> Check:
    """An int ``>= low`` (``TypeError`` for a non-int, ``ValueError`` below ``low``)."""
    def check(owner: str, name: str, value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,
                                                                         np.integer)):
            _fail(TypeError, owner, name, f"an int >= {low}", value)
        if value < low:
            _fail(ValueError, owner, name, f"an int >= {low}", value)
        return int(value)
    return check


def length(owner: str, name: str, value: Any) -> int:
    """A sequence length ``T`` fixed at construction: a positive int; any other value (also a
    float such as ``2.0``) is a ``ValueError``, a wrong number of time steps."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,
                                                                     np.integer)) or value < 1:
        _fail(ValueError, owner, name, "a positive int (the number of time steps)", value)
    return int(value)


def scalar(check: Check) -> Check:
    """``check`` of a number that may also be given as a one-element array."""
    def wrapped(owner: str, name: str, value: Any) -> Any:
        if hasattr(value, "shape") and not isinstance(value, np.generic):
            if np.size(value) != 1:
                _fail(ValueError, owner, name, "a scalar (one element)", value)
            value = np.asarray(value).reshape(()).item()
        return check(owner, name, value)
    return wrapped


def satisfies(predicate: Callable[[Any], bool], allowed: str) -> Check:
    """A value for which ``predicate`` holds (``ValueError`` otherwise)."""
    def check(owner: str, name: str, value: Any) -> Any:
        if not predicate(value):
            _fail(ValueError, owner, name, allowed, value)
        return value
    return check


def all_of(*checks: Check) -> Check:
    """Every check in turn, each on the value the previous one returned."""
    def check(owner: str, name: str, value: Any) -> Any:
        for c in checks:
            value = c(owner, name, value)
        return value
    return check


def choice(allowed: tuple) -> Check:
    def check(owner: str, name: str, value: Any) -> Any:
        if value not in allowed:
            _fail(ValueError, owner, name, f"one of {allowed}", value)
        return value
    return check


def function(owner: str, name: str, value: Any) -> Callable:
    """A callable; a class given where an instance is expected is caught."""
    if isinstance(value, type):
        raise TypeError(f"{owner}: {name} must be a function or an instance, got the class "
                        f"{value.__name__}; call it first, e.g. {value.__name__}()")
    if not callable(value):
        _fail(TypeError, owner, name, "callable", value)
    return value


def surrogate(owner: str, name: str, value: Any) -> Callable:
    """A surrogate instance, a surrogate name (``'ATan'``) or spec dict, or any callable."""
    from snnjax import surrogate as sg  # surrogates know no neuron; imported lazily
    if isinstance(value, (str, dict)):
        return sg.get_surrogate(value)
    if isinstance(value, type):
        raise TypeError(f"{owner}: {name} must be a surrogate instance, got the class "
                        f"{value.__name__}; call it: {value.__name__}()")
    if not callable(value):
        _fail(TypeError, owner, name, "a snnjax.surrogate function (e.g. surrogate.ATan()), a "
              "surrogate name or a callable", value)
    return value


def instance_of(types: type | tuple[type, ...], allowed: str) -> Check:
    """An instance of ``types`` (``TypeError`` otherwise; ``bool`` only if ``types`` has it)."""
    def check(owner: str, name: str, value: Any) -> Any:
        if not isinstance(value, types) or (isinstance(value, (bool, np.bool_))
                                            and not isinstance(True, types)):
            _fail(TypeError, owner, name, allowed, value)
        return value
    return check


def plain_function(owner: str, name: str, value: Any) -> Callable:
    """A callable that is not an ``nnx.Module`` (a module's variables would be baked in)."""
    from flax import nnx
    if isinstance(value, nnx.Module):
        _fail(TypeError, owner, name, "a plain function (not an nnx.Module)", value)
    return function(owner, name, value)


def rngs(owner: str, name: str, value: Any) -> Any:
    from flax import nnx
    if not isinstance(value, nnx.Rngs):
        _fail(TypeError, owner, name, "a flax.nnx.Rngs (e.g. rngs=nnx.Rngs(0))", value)
    return value


def optional_rngs(owner: str, name: str, value: Any) -> Any:
    """``None``, a ``flax.nnx.Rngs`` or one of its streams (an ``nnx.RngStream``)."""
    from flax import nnx
    if value is not None and not isinstance(value, (nnx.Rngs, nnx.RngStream)):
        _fail(TypeError, owner, name, "a flax.nnx.Rngs, an nnx.RngStream or None", value)
    return value


def ordered(owner: str, low_name: str, low: float | None, high_name: str,
            high: float | None, *, strict: bool = True) -> None:
    """``low < high`` (``<=`` when not ``strict``); skipped when either is ``None``."""
    if low is None or high is None:
        return
    if not (low < high if strict else low <= high):
        raise ValueError(f"{owner}: {high_name} must be {'>' if strict else '>='} {low_name}, got "
                         f"{high_name}={high}, {low_name}={low}")


def at_most(owner: str, name: str, value: float, bound_name: str, bound: float) -> None:
    """``value <= bound``, e.g. a band width ``k`` at most the sequence length ``T``."""
    if value > bound:
        raise ValueError(f"{owner}: {name} must be <= {bound_name}, got {name}={value}, "
                         f"{bound_name}={bound}")


__all__ = ["Check", "all_of", "as_input", "at_least", "at_most", "core_input_count",
           "conform_state", "core_output_count", "sequence_input", "boolean", "choice", "function", "greater", "in_range",
           "instance_of", "int_at_least", "length", "nonzero", "number", "optional_number",
           "optional_positive_int", "optional_rngs", "ordered", "plain_function", "positive_int",
           "rngs", "satisfies", "scalar", "surrogate"]


# --- inputs (checked at trace time) ------------------------------------------------------------

def as_input(x: Any, owner: str) -> Any:
    """The input policy, the same on every backend: Python lists (nested too) and NumPy arrays
    become JAX arrays (a tuple holds several inputs); integer and boolean inputs are cast to
    float32 (the neurons' float dtype; floating inputs keep theirs); complex inputs are
    rejected."""
    x = jnp.asarray(x) if isinstance(x, list) else jax.tree_util.tree_map(jnp.asarray, x)

    def conform(leaf: Any) -> Any:
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            raise TypeError(f"{owner}: complex inputs are not supported, got dtype {leaf.dtype}")
        if not jnp.issubdtype(leaf.dtype, jnp.floating):   # int / bool
            return leaf.astype(jnp.float32)
        return leaf

    return jax.tree_util.tree_map(conform, x)


def sequence_input(owner: str, x_seq: Any) -> Any:
    """A multi-step input (every leaf time-first ``[T, N, *]``, ``T >= 1``) as arrays."""
    x_seq = as_input(x_seq, owner)
    for leaf in jax.tree_util.tree_leaves(x_seq):
        if leaf.ndim < 2:
            raise ValueError(f"{owner}: multi-step input (step_mode='m') must be time-first "
                             f"[T, N, *] with at least 2 dimensions, got shape {leaf.shape}")
        if leaf.shape[0] == 0:
            raise ValueError(f"{owner}: multi-step input has T = 0 time steps (T >= 1 needed)")
    return x_seq


def conform_state(owner: str, given: Any, expected: dict, exact: tuple[str, ...] = ()) -> dict:
    """``given`` checked against ``expected`` (the state an input implies): the same variables;
    each value of the same shape (the names in ``exact``: a state left by a call) or
    broadcastable to it; cast to the expected dtype."""
    if not isinstance(given, dict) or set(given) != set(expected):
        names = sorted(given) if isinstance(given, dict) else type(given).__name__
        raise ValueError(f"{owner}: the state must hold the variables {sorted(expected)}, "
                         f"got {names}")
    out = {}
    for name, want in expected.items():
        value = jnp.asarray(given[name])
        if name in exact and value.shape != want.shape:
            raise ValueError(
                f"{owner}: the stored state {name} has shape {value.shape} but this input "
                f"needs {want.shape}: the neuron still holds the state of a batch of another "
                f"shape; call snnjax.functional.reset_net(model) first")
        try:
            out[name] = jnp.broadcast_to(value, want.shape).astype(want.dtype)
        except ValueError:
            raise ValueError(f"{owner}: state variable {name} of shape {value.shape} does not "
                             f"broadcast to the shape {want.shape} this input needs") from None
    return out


# --- FlexSN cores ------------------------------------------------------------------------------

def core_input_count(core: Callable, num_states: int, num_static: int) -> int:
    """Number of step inputs of a SpikingJelly-style FlexSN core, counted like the reference:
    positional parameters (defaulted ones included) minus states minus static inputs;
    keyword-only parameters are ignored."""
    kinds = [p.kind for p in inspect.signature(core).parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        raise TypeError("FlexSN: core must not take *args; list its inputs, states and static "
                        "inputs as positional parameters")
    n_pos = sum(k <= inspect.Parameter.POSITIONAL_OR_KEYWORD for k in kinds)  # positional ones
    if (n_in := n_pos - num_states - num_static) <= 0:
        raise ValueError(f"FlexSN: core must accept at least one step input; it has {n_pos} "
                         f"positional parameters for num_states={num_states} and "
                         f"{num_static} static inputs")
    return n_in


def core_output_count(core: Callable, num_args: int, num_states: int) -> int:
    """Number of outputs of a FlexSN core, found by running it on unit arrays of shape (1,)."""
    unit = jax.ShapeDtypeStruct((1,), jnp.float32)
    try:
        res = jax.eval_shape(lambda *a: core(*a), *([unit] * num_args))
    except Exception as e:  # the reference re-raises construction-time failures the same way
        raise RuntimeError(f"FlexSN: core must run on construction-time unit arrays of shape (1,); "
                           f"it raised {type(e).__name__}: {e}") from e
    res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
    if len(res) < num_states:
        raise ValueError(f"FlexSN: core returned {len(res)} values but num_states={num_states}; "
                         f"it must return (*outputs, *new_states)")
    if not all(jnp.issubdtype(r.dtype, jnp.floating) for r in res):
        raise ValueError(f"FlexSN: every value core returns must be floating point, got "
                         f"{[str(r.dtype) for r in res]} (cast spikes: (h >= 1).astype(h.dtype))")
    return len(res) - num_states
