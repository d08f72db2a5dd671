"""Base classes of the Flax NNX neuron modules: the state protocol and the spiking bases.

A neuron module validates and binds its static configuration and learnable parameters, declares
its state variables once (:meth:`MemoryModule.register_memory`), and calls its step function
from :mod:`snnjax.steps` through :func:`snnjax.kernels.multi_step`. Everything else here (the pure
API, the stateful call, ``reset``, ``detach``, state recording) derives from those declarations.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, ClassVar, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import _checks as C
from snnjax import _spikes
from snnjax import kernels, steps
from snnjax import surrogate as sg
from snnjax.steps.common import BoundStep

as_input, conform_state = C.as_input, C.conform_state

Array = jax.Array
STEP_MODES = ("s", "m")


class NeuronState(nnx.Variable):
    """One state variable of a neuron (``node.v``), carried from one call to the next."""


class StackAxes(nnx.Variable):
    """A neuron's 0-d ``int8`` marker, stacked like its state: shape ``()`` for one layer,
    ``(L,)`` for a stack of ``L`` layers made with ``nnx.vmap`` (and so on per stacking). Being
    state, it travels with every copy of the state (``nnx.split``, a checkpoint restored into
    ``nnx.eval_shape``), so ``reset`` knows which leading axes of a state variable are layers
    and which a call's batch left."""


class StateSequence(nnx.Variable):
    """A recorded state sequence (``v_seq`` with ``store_v_seq=True``), ``[T, N, *]``."""


@dataclasses.dataclass(frozen=True)
class Memory:
    """Declaration of one state variable: its name and initial value.

    ``extra_axes``: axes before the neuron axes (a queue of ``k`` inputs is ``[k, N, *]``);
    ``per_neuron=False``: a scalar (a step counter); ``dtype``: fixed dtype (default: the state
    dtype of the input, at least float32).
    """

    name: str
    init: float
    extra_axes: tuple[int, ...] = ()
    per_neuron: bool = True
    dtype: str | None = None

    def initial(self, x: Array) -> Array:
        dtype = self.dtype or steps.state_dtype(x.dtype)
        if not self.per_neuron:
            return jnp.full((), self.init, dtype)
        value = jnp.full_like(x, self.init, dtype)   # keeps x's sharding (explicit mesh axes)
        return jnp.broadcast_to(value, self.extra_axes + tuple(x.shape)) if self.extra_axes \
            else value


def _shape(a: Any) -> tuple:
    return tuple(np.shape(a))


@functools.lru_cache(maxsize=None)
def _class_checks(cls: type) -> dict[str, C.Check]:
    merged: dict[str, C.Check] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("arg_checks", {}))
    return merged


def static_items(module: nnx.Module) -> tuple:
    """The module's hashable static attributes (the key of a user-written charge's kernels)."""
    items = []
    for name, value in sorted(vars(module).items()):
        if name.startswith("_pytree") or isinstance(value, (nnx.Variable, nnx.Module)):
            continue
        try:
            hash(value)
        except TypeError:
            value = ("unhashable", id(value))
        items.append((name, value))
    return tuple(items)


class UserMethod:
    """A user's override (``neuronal_charge`` ...) of a ported SpikingJelly neuron as a pure
    function of the step, hashable by the module's class and static configuration.

    ``neuronal_charge(self, v, x, params)`` (snnjax's signature) is called as is;
    SpikingJelly's ``neuronal_charge(self, x)``, which reads and assigns ``self.v``, runs on a
    view of the module whose ``v`` (and ``w``) hold the step's traced values.
    """

    def __init__(self, module: nnx.Module, name: str):
        self.module, self.name = module, name
        self.method = getattr(type(module), name)
        self.reference_style = len(inspect.signature(self.method).parameters) == 2
        self._key = (type(module), name, static_items(module))

    def __call__(self, v: Array, x: Array, params: dict, *extra: Array) -> Array:
        if not self.reference_style:
            return self.method(self.module, v, x, params, *extra)
        view = _StepView(self.module, v=v, **({"w": extra[0]} if extra else {}))
        self.method(view, x)
        return view.v

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserMethod) and self._key == other._key


class _StepView:
    """Attribute view of a module for a SpikingJelly-style method: reads fall through to the
    module, writes (``self.v = ...``) stay in the view."""

    def __init__(self, module: nnx.Module, **values: Array):
        object.__setattr__(self, "_module", module)
        vars(self).update(values)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_module"), name)


# --- the state protocol ------------------------------------------------------------------------

class MemoryModule(nnx.Module):
    """A module with state carried between calls and SpikingJelly's step-mode interface.

    A subclass sets ``step_fn`` (a step of :mod:`snnjax.steps`), ``param_names`` (the attributes
    handed to the step as ``params``), ``arg_checks`` (validation of constructor arguments, also
    run when an attribute is reassigned), :meth:`step_config` (the step's static keywords), and
    declares its state with :meth:`register_memory`. From these come the pure API
    (:meth:`init_state`, :meth:`step`, :meth:`multi_step`, never mutating the module) and the
    stateful call ``m(x)`` (``step_mode='s'``: ``x[N, *]``; ``'m'``: ``x_seq[T, N, *]``).

    State variables are attributes (``node.v``, an ``nnx.Variable``) that exist from construction
    with their scalar initial value. ``node.v = array`` sets the initial membrane of the next call
    (it may broadcast to the input); a state left by a call must match the next input's shape
    exactly (else call :func:`snnjax.functional.reset_net`). ``reset()`` restores every variable
    to its declared initial value (keeping the leading axes of a vmapped stack of layers).

    Args:
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``); a
        subclass may support only one (``supported_step_modes``) (default ``'s'``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``).
    """

    supported_step_modes: ClassVar[tuple[str, ...]] = STEP_MODES
    step_fn: ClassVar[Callable | None] = None
    param_names: ClassVar[tuple[str, ...]] = ()
    arg_checks: ClassVar[dict[str, C.Check]] = {"backend": C.choice(kernels.BACKENDS)}
    record_flag: ClassVar[str | None] = None      # e.g. 'store_v_seq'
    ordered_pairs: ClassVar[tuple[tuple[str, str], ...]] = ()   # (low, high): low < high
    finite_state: ClassVar[bool] = True   # the non-finite policy: states saturate at +-max
    recorded: ClassVar[tuple[str, ...] | None] = ("v",)   # None: every state variable

    def __init__(self, step_mode: str = "s", backend: str = "auto"):
        self._memories: tuple[Memory, ...] = ()
        self.stack_axes = StackAxes(jnp.zeros((), jnp.int8))
        self._exact: tuple[bool, ...] = ()       # per memory: left by a call (no broadcasting)
        self.step_mode = C.choice(self.supported_step_modes)(type(self).__name__, "step_mode",
                                                             step_mode)
        self.backend = backend
        self.state_seq = nnx.Dict({})   # recorded name -> StateSequence (0-d until recorded)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(getattr(type(self), name, None), property):   # e.g. ``node.state = ...``
            object.__setattr__(self, name, value)
            return
        index = self._memory_index(name)
        if index is not None and not isinstance(value, nnx.Variable):
            self._assign(index, value)
            return
        check = _class_checks(type(self)).get(name)
        if check is not None:
            value = check(type(self).__name__, name, value)
        nnx.Module.__setattr__(self, name, value)
        for low, high in getattr(type(self), "ordered_pairs", ()):   # once both are set
            if name in (low, high) and {low, high} <= set(vars(self)):
                a, b = getattr(self, low), getattr(self, high)
                if isinstance(a, float) and isinstance(b, float):   # not None, not arrays
                    C.ordered(type(self).__name__, low, a, high, b)

    # -- declarations ---------------------------------------------------------------------------

    def register_memory(self, name: str, init: float, **kwargs: Any) -> None:
        """Declare the state variable ``name`` (``Memory``'s fields as keywords); re-declaring a
        name replaces its initial value."""
        decl = Memory(name, float(init), **kwargs)
        keep = [i for i, m in enumerate(self._memories) if m.name != name]
        self._memories = tuple(self._memories[i] for i in keep) + (decl,)
        self._exact = tuple(self._exact[i] for i in keep) + (False,)
        nnx.Module.__setattr__(self, name, NeuronState(jnp.asarray(decl.init, decl.dtype)))
        if self.recorded is None or name in self.recorded:
            self.state_seq[name] = StateSequence(jnp.zeros((), jnp.float32))

    def step_config(self) -> dict:
        """The static keyword arguments of ``step_fn`` (structure, not numbers)."""
        return {}

    def bound_step(self) -> BoundStep:
        """``step_fn`` with :meth:`step_config` bound: the hashable step the kernels are built for."""
        return BoundStep(cast(Callable, type(self).step_fn), finite_state=type(self).finite_state,
                         **self.step_config())

    def params(self) -> dict:
        """The numbers the step receives: ``param_names`` (current values; ``v_reset=None`` -> 0)."""
        out = {}
        for name in self.param_names:
            value = getattr(self, name)
            out[name] = value.get_value() if isinstance(value, nnx.Variable) else (
                0.0 if value is None else value)
        return out

    def init_state(self, x: Any) -> Any:
        """The initial state for one step of input ``x`` (``[N, *]``): ``{name: array}``."""
        x = as_input(x, type(self).__name__)
        return self._pack({m.name: m.initial(x) for m in self._memories})

    def _pack(self, memories: dict) -> Any:
        """Stored variables -> the step's state (a dict here; FlexSN uses a tuple)."""
        return memories

    def _unpack(self, state: Any) -> dict:
        return state

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

    def _conform(self, state: Any, x: Any, *, exact: tuple[bool, ...] | None = None) -> Any:
        """``state`` checked against the state ``x`` implies (see :func:`conform_state`)."""
        exact_names = () if exact is None else tuple(
            m.name for m, e in zip(self._memories, exact) if e)
        return self._pack(conform_state(type(self).__name__, self._unpack(state),
                                        self._unpack(self.init_state(x)), exact_names))

    def step(self, state: Any, x: Any, params: dict | None = None) -> tuple[Any, Any]:
        """One step from an explicit state: ``(state, x[N, *]) -> (state, out[N, *])``.

        ``params`` (optional) overrides some or all of :meth:`params` (e.g. a traced ``tau``).
        """
        x = as_input(x, type(self).__name__)
        return kernels.single_step(self.bound_step(), self._conform(state, x), x,
                                  self._params(params))

    def multi_step(self, state: Any, x_seq: Any, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[Any, Any]:
        """The step over the leading time axis: ``(state, x_seq[T, N, *]) -> (state, out[T, N, *])``.

        With ``return_state_seq=True`` the returned state holds every step's state.
        """
        x_seq = self._check_sequence(x_seq)
        state = self._conform(state, jax.tree_util.tree_map(lambda a: a[0], x_seq))
        return kernels.multi_step(self.bound_step(), state, x_seq, self._params(params),
                                  backend=self.backend, return_state_seq=return_state_seq)

    # -- stateful API (SpikingJelly style) ------------------------------------------------------

    def __call__(self, *args: Any) -> Any:
        if self.step_mode == "s":
            return self.single_step_forward(*args)
        return self.multi_step_forward(*args)

    def _require(self, mode: str) -> None:
        if mode not in self.supported_step_modes:
            raise ValueError(f"{type(self).__name__}: step_mode must be one of "
                             f"{self.supported_step_modes}, got {mode!r}")

    def _recording(self) -> bool:
        return bool(self.record_flag and getattr(self, self.record_flag))

    def single_step_forward(self, x: Any) -> Any:
        """Stateful single step on ``x[N, *]``: reads and updates the stored state."""
        self._require("s")
        x = as_input(x, type(self).__name__)
        state, out = self.step(self.stored_state(x), x)
        self._store(state, jax.tree_util.tree_map(lambda a: a[None], state), append=True)
        return _spikes.mark_neuron_output(self, out)   # spikes: kept as int8 where stored

    def multi_step_forward(self, x_seq: Any) -> Any:
        """Stateful multi-step call on ``x_seq[T, N, *]``: reads and updates the stored state."""
        self._require("m")
        x_seq = self._check_sequence(x_seq)
        record = self._recording()
        res, out = self.multi_step(self.stored_state(jax.tree_util.tree_map(lambda a: a[0], x_seq)),
                                   x_seq, return_state_seq=record)
        final = jax.tree_util.tree_map(lambda a: a[-1], res) if record else res
        self._store(final, res if record else None)
        return _spikes.mark_neuron_output(self, out)   # spikes: kept as int8 where stored

    def stored_state(self, x: Any) -> Any:
        """The stored variables as the step's state for input ``x``, checked (see the class doc)."""
        current = {m.name: getattr(self, m.name).get_value() for m in self._memories}
        return self._conform(self._pack(current), x, exact=self._exact)

    def _store(self, state: Any, seq: Any = None, *, append: bool = False) -> None:
        self.state = state
        if not self._recording():
            return self._clear_recording()
        new = self._unpack(seq)
        for name, var in self.state_seq.items():
            old, value = var.get_value(), new[name]
            if append and old.shape[1:] == value.shape[1:] and old.dtype == value.dtype:
                value = jnp.concatenate([old, value])
            var.set_value(value)

    def recording(self, name: str) -> Array | None:
        """The recorded sequence of ``name`` (``[T, N, *]``), or ``None`` if nothing is recorded."""
        seq = self.state_seq[name].get_value() if name in self.state_seq else None
        return None if seq is None or seq.ndim < 2 else seq

    def _layer_shape(self) -> tuple[int, ...]:
        """The layer axes of a stack of this neuron (``()`` for one layer): the marker's shape."""
        return jnp.shape(self.stack_axes.get_value())

    def _clear_recording(self) -> None:
        for var in self.state_seq.values():   # a stack keeps one placeholder per layer
            var.set_value(jnp.zeros(self._layer_shape(), jnp.float32))

    def _memory_index(self, name: str) -> int | None:
        for i, m in enumerate(vars(self).get("_memories", ())):
            if m.name == name:
                return i
        return None

    def _assign(self, index: int, value: Any, exact: bool = False) -> None:
        """Set one variable: by the user (``node.v = v0``: may broadcast to the next input) or
        from a call (``exact``: the next input must match its shape)."""
        value = jnp.asarray(value)
        if not jnp.issubdtype(value.dtype, jnp.number) or jnp.iscomplexobj(value):
            raise TypeError(f"{type(self).__name__}: state variable {self._memories[index].name} "
                            f"must be a real array, got dtype {value.dtype}")
        getattr(self, self._memories[index].name).set_value(value)
        self._exact = self._exact[:index] + (exact,) + self._exact[index + 1:]

    def reset(self) -> None:
        """Every state variable back to its declared initial value; recordings cleared."""
        lead = self._layer_shape()
        for m in self._memories:
            var = getattr(self, m.name)
            # unstacked: exactly the declared value (as fresh), so a jitted step sees one type
            var.set_value(jnp.full(lead, m.init, m.dtype or var.get_value().dtype) if lead
                          else jnp.asarray(m.init, m.dtype))
        self._exact = (False,) * len(self._memories)
        self._clear_recording()

    def detach(self) -> None:
        """Cut gradients through the stored state (truncated BPTT)."""
        for var in [getattr(self, m.name) for m in self._memories] + list(self.state_seq.values()):
            var.set_value(jax.lax.stop_gradient(var.get_value()))

    @property
    def state(self) -> Any:
        """The stored state in the step's layout; assigning one sets every variable (the next
        input must then match its shapes exactly, as after a call)."""
        return self._pack({m.name: getattr(self, m.name).get_value() for m in self._memories})

    @state.setter
    def state(self, state: Any) -> None:
        memories = self._unpack(state)
        if set(memories) != {m.name for m in self._memories}:
            raise ValueError(f"{type(self).__name__}: the state must hold the variables "
                             f"{sorted(m.name for m in self._memories)}, got {sorted(memories)}")
        for i, m in enumerate(self._memories):
            self._assign(i, memories[m.name], exact=True)

    def _check_sequence(self, x_seq: Any) -> Any:
        return C.sequence_input(type(self).__name__, x_seq)


# --- spiking bases -----------------------------------------------------------------------------

_TEMPLATE_METHODS = ("neuronal_fire", "neuronal_reset", "single_step_forward",
                     "multi_step_forward", "single_step_functional",
                     "jit_eval_single_step_forward", "jit_eval_multi_step_forward")


def _adopt_user_overrides(cls: Any, **kwargs: Any) -> None:   # a MemoryModule subclass
    """``__init_subclass__`` of the spiking bases: in a ported neuron a ``neuronal_charge``
    override becomes the charge of the step; SpikingJelly's other template methods cannot be
    adapted and are refused here."""
    super(MemoryModule, cls).__init_subclass__(**kwargs)
    if cls.__module__.startswith("snnjax."):
        return
    for name in _TEMPLATE_METHODS:
        if name in vars(cls):
            raise TypeError(
                f"{cls.__name__} overrides {name}, which snnjax does not call. Write the whole "
                f"step as a pure function step(state, x, params, **statics) -> (state, out), set "
                f"it as the class attribute step_fn = staticmethod(step), declare extra state "
                f"with self.register_memory(name, init) and return the statics from "
                f"step_config(); or use neuron.FlexSN.from_step(step, init_state); or override "
                f"only neuronal_charge(self, x) (or neuronal_charge(self, v, x, params)).")


def _init_spiking(node: BaseNode | SimpleBaseNode, v_threshold: Any, v_reset: Any, surrogate: Any,
                  detach_reset: Any) -> None:
    node.v_threshold, node.v_reset, node.detach_reset = v_threshold, v_reset, detach_reset
    default = type(node).default_surrogate  # pyright: ignore[reportAttributeAccessIssue] (a ClassVar of both)
    node.surrogate_function = default() if surrogate is None else surrogate


class BaseNode(MemoryModule):
    """Production base of the spiking neurons (SpikingJelly's ``BaseNode``).

    Per step ``H = charge(V, X)``, ``S = sg(H - v_threshold)``, then hard reset
    ``V = S * v_reset + (1 - S) * H`` or, with ``v_reset=None``, soft reset
    ``V = H - S * v_threshold`` (``detach_reset``: the spike enters the reset without gradient).

    Args:
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    State ``v`` starts at ``v_reset`` (0 with soft reset). Port a custom neuron by subclassing
    and overriding ``neuronal_charge(self, x)`` (SpikingJelly's: read ``self.v``, assign the
    charged ``self.v``) or ``neuronal_charge(self, v, x, params) -> H``.
    """

    default_surrogate: ClassVar[Callable[[], Callable]] = sg.Sigmoid
    v_threshold: float
    v_reset: float | None
    surrogate_function: Callable
    detach_reset: bool
    step_fn = staticmethod(steps.spiking_step)
    param_names = ("v_threshold", "v_reset")
    arg_checks = {"v_threshold": C.number, "v_reset": C.optional_number,
                  "surrogate_function": C.surrogate, "detach_reset": C.boolean,
                  "store_v_seq": C.boolean}
    record_flag = "store_v_seq"
    # a reset at or above the threshold makes the neuron fire forever once it fires
    ordered_pairs = (("v_reset", "v_threshold"),)

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(step_mode, backend)
        _init_spiking(self, v_threshold, v_reset, surrogate_function, detach_reset)
        self.store_v_seq = store_v_seq
        self.register_memory("v", 0.0 if self.v_reset is None else self.v_reset)

    __init_subclass__ = classmethod(  # pyright: ignore[reportAssignmentType] (Pytree's hook, extended)
        lambda cls, **kw: _adopt_user_overrides(cls, **kw))

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    def step_config(self) -> dict:
        config = {"surrogate": self.surrogate_function, "soft_reset": self.soft_reset,
                  "detach_reset": self.detach_reset}
        if type(self).step_fn is steps.spiking_step:   # a ported neuron's own charge
            config["charge"] = UserMethod(self, "neuronal_charge")
        return config

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        """The charge ``H = f(V[t-1], X[t])`` of a custom neuron (override it)."""
        raise NotImplementedError(f"{type(self).__name__} has no charge: override "
                                  f"neuronal_charge(self, x) or neuronal_charge(self, v, x, params)")

    @property
    def v_seq(self) -> Array | None:
        """Post-reset membrane of every step of the last call(s), ``[T, N, *]``, if recorded."""
        return self.recording("v")


class SimpleBaseNode(MemoryModule):
    """Teaching-style base (SpikingJelly's ``SimpleBaseNode``): as :class:`BaseNode` without
    ``store_v_seq``; the membrane always starts at 0 (whatever ``v_reset`` is). Subclass and
    override ``neuronal_charge``.

    Args:
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: reset value, a finite number ``< v_threshold``, or ``None`` for the soft reset (the
        membrane starts at 0 either way) (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    default_surrogate: ClassVar[Callable[[], Callable]] = sg.Sigmoid
    v_threshold: float
    v_reset: float | None
    surrogate_function: Callable
    detach_reset: bool
    step_fn = staticmethod(steps.spiking_step)
    param_names = BaseNode.param_names
    arg_checks, ordered_pairs = BaseNode.arg_checks, BaseNode.ordered_pairs
    soft_reset = BaseNode.soft_reset
    step_config = BaseNode.step_config
    neuronal_charge = BaseNode.neuronal_charge

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", *, backend: str = "auto"):
        super().__init__(step_mode, backend)
        _init_spiking(self, v_threshold, v_reset, surrogate_function, detach_reset)
        self.register_memory("v", 0.0)

    __init_subclass__ = vars(BaseNode)["__init_subclass__"]


# --- non-spiking base --------------------------------------------------------------------------

class NonSpikingBaseNode(nnx.Module):
    """A multi-step integrator that never fires and returns its (decoded) membrane.

    Input ``[T, N, *]``; the membrane starts at 0 on every call (nothing is kept between calls).
    Output by ``decode``: ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last_mem'``
    (``[N, *]``), or ``None`` (the membrane sequence ``[T, N, *]``).

    Args:
      decode: output decoding: ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last_mem'`` (or
        ``'last-mem'``; each ``[N, *]``) or ``None`` (the membrane sequence ``[T, N, *]``) (default
        ``None``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn: ClassVar[Callable | None] = None
    param_names: ClassVar[tuple[str, ...]] = ()
    finite_state: ClassVar[bool] = True
    arg_checks = {"decode": C.choice(steps.DECODES), "backend": C.choice(kernels.BACKENDS)}
    __setattr__ = MemoryModule.__setattr__
    _memory_index = MemoryModule._memory_index
    params = MemoryModule.params
    _params = MemoryModule._params
    bound_step = MemoryModule.bound_step
    step_config = MemoryModule.step_config
    _check_sequence = MemoryModule._check_sequence

    def __init__(self, decode: str | None = None, *, backend: str = "auto"):
        self.decode = decode
        self.backend = backend

    def init_state(self, x: Any) -> dict:
        x = as_input(x, type(self).__name__)
        return {"v": jnp.zeros(x.shape, steps.state_dtype(x.dtype))}

    def _conform(self, state: Any, x: Any) -> dict:
        """``state`` checked for one step of input ``x`` (the noisy node's ``(x, noise)``)."""
        x = x[0] if isinstance(x, tuple) else x
        return conform_state(type(self).__name__, state, self.init_state(x))

    def step(self, state: dict, x: Any, params: dict | None = None) -> tuple[dict, Array]:
        """One integration step; returns ``(state, V[t])``."""
        x = as_input(x, type(self).__name__)
        return kernels.single_step(self.bound_step(), self._conform(state, x), x,
                                  self._params(params))

    def multi_step(self, state: dict, x_seq: Any, params: dict | None = None) -> tuple[dict, Array]:
        """Integrate ``x_seq[T, N, *]`` from ``state``; returns ``(final_state, decoded)``."""
        x_seq = self._check_sequence(x_seq)
        state = self._conform(state, jax.tree_util.tree_map(lambda a: a[0], x_seq))
        final, v_seq = kernels.multi_step(self.bound_step(), state, x_seq, self._params(params),
                                          backend=self.backend)
        return final, steps.decode_membrane(v_seq, self.decode)

    def __call__(self, x_seq: Any) -> Array:
        x_seq = self._check_sequence(x_seq)
        return self.multi_step(self.init_state(x_seq[0]), x_seq)[1]
