"""Base classes of the Flax NNX neuron modules.

A module is a thin wrapper: it validates its constructor arguments, keeps the neuron state
between calls in an NNX variable, and hands a pure step ``(state, x, params) -> (state, out)``
to :func:`snnjax.kernels.multi_step`. The mathematics lives in :mod:`snnjax.steps`.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import kernels
from snnjax import steps
from snnjax import surrogate as sg

Array = jax.Array
STEP_MODES = ("s", "m")


class NeuronState(nnx.Variable):
    """The membrane (and other) state a neuron carries from one call to the next.

    Holds ``None`` (not materialised: the next call starts from the initial state) or a dict of
    arrays keyed by state name.
    """


class StateSequence(nnx.Variable):
    """Recorded state sequence (``v_seq`` with ``store_v_seq=True``); ``None`` when not recorded."""


# --- argument checks (clear errors at construction) --------------------------------------------

def check_number(name: str, value: Any, owner: str) -> float:
    """A hyperparameter that must be a real number; returns it as a Python float."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{owner}: {name} must be a real number (int or float), "
                        f"got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return value


def check_optional_number(name: str, value: Any, owner: str) -> float | None:
    return None if value is None else check_number(name, value, owner)


def check_greater(name: str, value: Any, bound: float, owner: str) -> float:
    value = check_number(name, value, owner)
    if not value > bound:
        raise ValueError(f"{owner}: {name} must be > {bound}, got {value}")
    return value


def check_bool(name: str, value: Any, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, allowed: tuple, owner: str) -> Any:
    if value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {allowed}, got {value!r}")
    return value


def check_surrogate(value: Any, owner: str) -> Callable[[Array], Array]:
    """A surrogate instance, a surrogate class name such as ``'ATan'``, or any callable."""
    if isinstance(value, (str, dict)):
        return sg.get_surrogate(value)
    if not callable(value):
        raise TypeError(f"{owner}: surrogate_function must be a snnjax.surrogate function "
                        f"(e.g. snnjax.surrogate.ATan()), a surrogate name or a callable, "
                        f"got {value!r}")
    return value


def _shape_str(tree: Any) -> str:
    return str(jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), tree))


# --- the step handed to the sequence engine -----------------------------------------------------

def static_config(module: nnx.Module) -> tuple:
    """The module's static (non-variable) attributes, as a hashable tuple.

    A neuron's step reads its structure (reset mode, surrogate, train/eval flag, ...) from these
    attributes, so two modules with equal static configuration run the same step.
    """
    items = []
    for name, value in sorted(vars(module).items()):
        if name.startswith(("_pytree", "_object")) or isinstance(value, (nnx.Variable, nnx.Module)):
            continue
        try:
            hash(value)
        except TypeError:
            value = ("unhashable", id(value))
        items.append((name, value))
    return tuple(items)


class ModuleStep:
    """A module's pure step as a hashable callable for :func:`snnjax.kernels.multi_step`.

    The kernel generator caches compiled kernels per step; keying the cache on the module's static
    configuration (not on the bound method) makes ``m.eval()`` or a changed option build a new
    kernel, and lets equal neurons share one.
    """

    __slots__ = ("fn", "key")

    def __init__(self, module: nnx.Module, fn: Callable, *extra_key: Any):
        self.fn = fn
        self.key = (type(module), getattr(fn, "__qualname__", repr(fn)), extra_key,
                    static_config(module))

    def __call__(self, state: Any, x: Any, params: Any) -> tuple[Any, Any]:
        return self.fn(state, x, params)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleStep) and self.key == other.key

    @property
    def __name__(self) -> str:  # for error messages of the kernel generator
        return getattr(self.fn, "__name__", "step")


# --- stateful base -----------------------------------------------------------------------------

class MemoryModule(nnx.Module):
    """A module with state carried between calls and SpikingJelly's step-mode interface.

    Subclasses define :meth:`init_state`, :meth:`params` and :meth:`single_step_functional`;
    this class derives from them the pure API (:meth:`step`, :meth:`multi_step`) and the
    stateful call (``m(x)``).
    """

    supported_step_modes: tuple[str, ...] = STEP_MODES

    def __init__(self, step_mode: str = "s", backend: str = "auto"):
        self.step_mode = check_choice("step_mode", step_mode, self.supported_step_modes,
                                      type(self).__name__)
        try:
            self.backend = kernels.check_backend(backend)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None
        self.memory = NeuronState(None)

    # -- to be defined by subclasses ------------------------------------------------------------

    def init_state(self, x: Array) -> dict:
        """Initial state for a single-step-shaped example ``x`` (``[N, *]``)."""
        raise NotImplementedError

    def params(self) -> dict:
        """The numeric hyperparameters and current learnable values the step receives."""
        return {}

    def single_step_functional(self, state: dict, x: Any, params: dict) -> tuple[dict, Any]:
        """One step ``(state, x, params) -> (state, out)``; pure, must not touch ``self``'s state."""
        raise NotImplementedError

    # -- pure API -------------------------------------------------------------------------------

    def _params(self, params: dict | None) -> dict:
        own = self.params()
        if params is None:
            return own
        unknown = set(params) - set(own)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown params {sorted(unknown)}; "
                             f"this neuron's params are {sorted(own)}")
        return {**own, **params}

    def step(self, state: dict, x: Any, params: dict | None = None) -> tuple[dict, Any]:
        """One step from an explicit state: ``(state, x[N, *]) -> (state, out[N, *])``.

        ``params`` (optional) overrides some or all of :meth:`params` (e.g. a traced ``tau``).
        Never mutates the module.
        """
        return self.single_step_functional(state, x, self._params(params))

    def multi_step(self, state: dict, x_seq: Any, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Any]:
        """The step over the leading time axis: ``(state, x_seq[T, N, *]) -> (state, out[T, N, *])``.

        With ``return_state_seq=True`` the returned state holds every step's state
        (``[T, N, *]`` leaves). Never mutates the module.
        """
        self._check_sequence(x_seq)
        return kernels.multi_step(ModuleStep(self, self.single_step_functional), state, x_seq,
                                  self._params(params),
                                  backend=self.backend, return_state_seq=return_state_seq)

    # -- stateful API (SpikingJelly style) ------------------------------------------------------

    def __call__(self, *args: Any) -> Any:
        if self.step_mode == "s":
            return self.single_step_forward(*args)
        if self.step_mode == "m":
            return self.multi_step_forward(*args)
        raise ValueError(f"{type(self).__name__}: step_mode must be one of "
                         f"{self.supported_step_modes}, got {self.step_mode!r}")

    def single_step_forward(self, x: Any) -> Any:
        """Stateful single step on ``x[N, *]``: reads and updates the stored state."""
        if "s" not in self.supported_step_modes:
            raise ValueError(f"{type(self).__name__} supports step_mode in "
                             f"{self.supported_step_modes} only")
        state = self._stored_state(x)
        state, out = self.step(state, x)
        self.memory.set_value(state)
        return out

    def multi_step_forward(self, x_seq: Any) -> Any:
        """Stateful multi-step call on ``x_seq[T, N, *]``: reads and updates the stored state."""
        if "m" not in self.supported_step_modes:
            raise ValueError(f"{type(self).__name__} supports step_mode in "
                             f"{self.supported_step_modes} only")
        self._check_sequence(x_seq)
        state = self._stored_state(jax.tree_util.tree_map(lambda a: a[0], x_seq))
        state, out = self.multi_step(state, x_seq)
        self.memory.set_value(state)
        return out

    def reset(self) -> None:
        """Forget the state: the next call starts from :meth:`init_state`."""
        self.memory.set_value(None)

    def detach(self) -> None:
        """Cut gradients through the stored state (truncated BPTT)."""
        state = self.memory.get_value()
        if state is not None:
            self.memory.set_value(jax.lax.stop_gradient(state))

    @property
    def state(self) -> dict | None:
        """The stored state dict (``None`` before the first call or after :meth:`reset`)."""
        return self.memory.get_value()

    def __getattr__(self, name: str) -> Any:
        # SpikingJelly users read memories as attributes (``node.v``).
        if name != "memory" and not name.startswith("_"):
            try:
                memory = object.__getattribute__(self, "memory")
            except AttributeError:
                memory = None
            if memory is not None:
                state = memory.get_value()
                if isinstance(state, dict) and name in state:
                    return state[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- helpers --------------------------------------------------------------------------------

    def _check_sequence(self, x_seq: Any) -> None:
        for leaf in jax.tree_util.tree_leaves(x_seq):
            if np.ndim(leaf) < 2:
                raise ValueError(f"{type(self).__name__}: multi-step input must be time-first "
                                 f"[T, N, *] with at least 2 dimensions, got shape "
                                 f"{tuple(np.shape(leaf))}")
            if np.shape(leaf)[0] == 0:
                raise ValueError(f"{type(self).__name__}: multi-step input has T = 0 time steps")

    def _stored_state(self, x: Any) -> dict:
        """The stored state, checked against the input; the initial state if none is stored."""
        expected = self.init_state(x)
        state = self.memory.get_value()
        if state is None:
            return expected
        exp_struct = jax.tree_util.tree_structure(expected)
        if jax.tree_util.tree_structure(state) != exp_struct or any(
                np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(state),
                                                           jax.tree_util.tree_leaves(expected))):
            raise ValueError(
                f"{type(self).__name__}: the stored state has shapes {_shape_str(state)} but this "
                f"input needs {_shape_str(expected)}. The neuron still holds the state of a batch "
                f"of another shape: call snnjax.functional.reset_net(model) (or this module's "
                f".reset()) before feeding it.")
        return jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), state, expected)


# --- spiking bases -----------------------------------------------------------------------------

class ThresholdNode(MemoryModule):
    """Threshold, reset value and surrogate: the arguments every spiking neuron validates.

    ``v_reset=None`` selects the soft reset. ``default_surrogate`` builds the surrogate used when
    none is given (``Sigmoid()`` here; the CUBA/ILC/noisy populations use ``Rect()``).
    """

    default_surrogate: Callable[[], Callable] = sg.Sigmoid

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, step_mode: str = "s", *,
                 backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(step_mode=step_mode, backend=backend)
        self.v_threshold = check_number("v_threshold", v_threshold, owner)
        self.v_reset = check_optional_number("v_reset", v_reset, owner)
        self.surrogate_function = check_surrogate(
            type(self).default_surrogate() if surrogate_function is None else surrogate_function,
            owner)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    def params(self) -> dict:
        return {"v_threshold": self.v_threshold,
                "v_reset": 0.0 if self.v_reset is None else self.v_reset}


class _SpikingNode(ThresholdNode):
    """Shared constructor and charge -> fire -> reset step of SimpleBaseNode and BaseNode."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, step_mode, backend=backend)
        self.detach_reset = check_bool("detach_reset", detach_reset, type(self).__name__)

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        """The charge equation ``H[t] = f(V[t-1], X[t])``; the one method a custom neuron needs."""
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(v, x, params)")

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return steps.spiking_step(state, x, params, charge=self.neuronal_charge,
                                  surrogate=self.surrogate_function, soft_reset=self.soft_reset,
                                  detach_reset=self.detach_reset)

    def _initial_v(self) -> float:
        raise NotImplementedError

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        return {"v": jnp.full(x.shape, self._initial_v(), steps.state_dtype(x.dtype))}


class SimpleBaseNode(_SpikingNode):
    """Teaching-style base: subclass and define :meth:`neuronal_charge` only.

    The membrane always starts at 0 (whatever ``v_reset`` is). Per step:
    ``H = neuronal_charge(V, X)``, ``S = sg(H - v_threshold)``, then hard reset
    ``V = S * v_reset + (1 - S) * H`` or, with ``v_reset=None``, soft reset ``V = H - S * v_threshold``.
    Input ``[N, *]`` (``step_mode='s'``) or ``[T, N, *]`` (``'m'``); output spikes of the same shape.
    """

    def _initial_v(self) -> float:
        return 0.0


class BaseNode(_SpikingNode):
    """Production base of the spiking neurons (SpikingJelly's ``BaseNode``).

    Subclass and define :meth:`neuronal_charge` (charge -> fire -> reset is inherited), or
    override :meth:`single_step_functional` (and :meth:`init_state`) for a full custom step.
    The membrane starts at ``v_reset`` (0 with soft reset). ``store_v_seq=True`` keeps the
    post-reset membrane of every step in ``v_seq`` (``[T, N, *]``).
    """

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         backend=backend)
        self.store_v_seq = check_bool("store_v_seq", store_v_seq, type(self).__name__)
        self.state_seq = StateSequence(None)

    def _initial_v(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    @property
    def v_seq(self) -> Array | None:
        """Post-reset membrane of every step of the last call(s), ``[T, N, *]``, if recorded."""
        seq = self.state_seq.get_value()
        return None if seq is None else seq["v"]

    def single_step_forward(self, x: Array) -> Array:
        out = super().single_step_forward(x)
        if self.store_v_seq:
            state = self.memory.get_value()
            seq = self.state_seq.get_value()
            new = jax.tree_util.tree_map(lambda a: a[None], state)
            if seq is not None and all(
                    s.shape[1:] == n.shape[1:] and s.dtype == n.dtype
                    for s, n in zip(jax.tree_util.tree_leaves(seq), jax.tree_util.tree_leaves(new))):
                new = jax.tree_util.tree_map(lambda s, n: jnp.concatenate([s, n]), seq, new)
            self.state_seq.set_value(new)
        return out

    def multi_step_forward(self, x_seq: Array) -> Array:
        if not self.store_v_seq:
            self.state_seq.set_value(None)
            return super().multi_step_forward(x_seq)
        self._check_sequence(x_seq)
        state = self._stored_state(x_seq[0])
        state_seq, out = self.multi_step(state, x_seq, return_state_seq=True)
        self.memory.set_value(jax.tree_util.tree_map(lambda a: a[-1], state_seq))
        self.state_seq.set_value(state_seq)
        return out

    def reset(self) -> None:
        super().reset()
        self.state_seq.set_value(None)

    def detach(self) -> None:
        super().detach()
        seq = self.state_seq.get_value()
        if seq is not None:
            self.state_seq.set_value(jax.lax.stop_gradient(seq))


# --- non-spiking base --------------------------------------------------------------------------

class NonSpikingBaseNode(nnx.Module):
    """A multi-step integrator that never fires and returns its (decoded) membrane.

    Input ``[T, N, *]``; the membrane starts at 0 on every call (nothing is kept between calls).
    Output by ``decode``: ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last_mem'``
    (``[N, *]``), or ``None`` (the membrane sequence ``[T, N, *]``). Subclasses define
    :meth:`neuronal_charge`.
    """

    def __init__(self, decode: str | None = None, *, backend: str = "auto"):
        owner = type(self).__name__
        self.decode = check_choice("decode", decode, steps.DECODES, owner)
        try:
            self.backend = kernels.check_backend(backend)
        except ValueError as e:
            raise ValueError(f"{owner}: {e}") from None

    def params(self) -> dict:
        return {}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(v, x, params)")

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        return {"v": jnp.zeros(x.shape, steps.state_dtype(x.dtype))}

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return steps.integrator_step(state, x, params, charge=self.neuronal_charge)

    def step(self, state: dict, x: Array, params: dict | None = None) -> tuple[dict, Array]:
        """One integration step; returns ``(state, V[t])``."""
        return self.single_step_functional(state, x, {**self.params(), **(params or {})})

    def multi_step(self, state: dict, x_seq: Array, params: dict | None = None) -> tuple[dict, Array]:
        """Integrate ``x_seq[T, N, *]`` from ``state``; returns ``(final_state, decoded)``."""
        MemoryModule._check_sequence(self, x_seq)
        final, v_seq = kernels.multi_step(ModuleStep(self, self.single_step_functional), state, x_seq,
                                          {**self.params(), **(params or {})},
                                          backend=self.backend)
        return final, steps.decode_membrane(v_seq, self.decode)

    def __call__(self, x_seq: Array) -> Array:
        MemoryModule._check_sequence(self, x_seq)
        return self.multi_step(self.init_state(x_seq[0]), x_seq)[1]
