"""FlexSN: a spiking neuron from a user-written step function, run by fused kernels on the GPU.

Two ways to write the step:

* SpikingJelly's ``core`` convention (for porting):
  ``core(*step_inputs, *states, *static_inputs) -> (*outputs, *new_states)``, all per-step arrays;
  construct ``FlexSN(core, num_states, static_inputs=(), step_mode='m', store_state_seqs=False)``.
* The native convention ``step(state, x, params) -> (state, out)``:
  ``FlexSN.from_step(step, init_state, params=None)``.

Either way the multi-step path is :func:`snnjax.kernels.multi_step`, i.e. the generated Pallas
kernels on GPU (``backend='auto'`` or ``'pallas'``) and ``lax.scan`` elsewhere.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax.kernels.flexsn_kernel import FlexSNKernel
from snnjax.neuron.base import Array, MemoryModule, as_input


class StaticInput(nnx.Variable):
    """A non-learnable static input of a FlexSN core (SpikingJelly registers it as a buffer)."""


def _static(owner: str, name: str, value: Any) -> nnx.Variable:
    """An ``nnx.Param`` stays learnable; anything else becomes a :class:`StaticInput`."""
    C.instance_of((jax.Array, np.ndarray, numbers.Real, nnx.Variable),
                  "an array, a number or an nnx.Param")(owner, name, value)
    return value if isinstance(value, nnx.Param) else StaticInput(jnp.asarray(
        value.get_value() if isinstance(value, nnx.Variable) else value))


def _pack(self: FlexSN | NativeFlexSN, memories: dict) -> Any:
    """The state variables ``_state_<i>`` -> the step's state (``self._tree``: a tuple for
    FlexSN, the structure of ``init_state``'s result for the native form)."""
    return jax.tree_util.tree_unflatten(self._tree, [memories[f"_state_{i}"]
                                                     for i in range(self._tree.num_leaves)])


def _unpack(self: MemoryModule, state: Any) -> dict:
    return {f"_state_{i}": a for i, a in enumerate(jax.tree_util.tree_leaves(state))}


def _state_seqs(self: MemoryModule) -> Any:
    """Every step's states of the last call(s) with ``store_state_seqs=True`` (else ``None``)."""
    seqs = {name: self.recording(name) for name in self.state_seq}
    return None if not seqs or any(s is None for s in seqs.values()) else self._pack(seqs)


class FlexSN(MemoryModule):
    """A spiking neuron defined by a user step function (SpikingJelly's ``FlexSN``).

    Args:
      core: ``core(*step_inputs, *states, *static_inputs) -> (*outputs, *new_states)``, a plain
        function; all arguments are per-step arrays (``[N, *]``), computed elementwise (required).
      num_states: number of states, an int ``>= 0`` (they start at zeros shaped like the first
        input's step) (required).
      static_inputs: arrays or numbers (``nnx.Param`` for learnable ones) passed to every step,
        each a scalar or of the per-step shape; available as ``_static_input_<i>`` (default
        ``()``).
      step_mode: ``'m'`` (inputs ``[T, N, *]``) or ``'s'`` (``[N, *]``) (default ``'m'``).
      store_state_seqs: ``True`` / ``False``: keep every step's states in ``state_seqs`` (default
        ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    Call with the step inputs (``f(x_seq)`` or ``f(x_seq, y_seq)``); returns one array per output
    (a tuple when there are several, ``()`` when none). The pure API takes one input array or a
    tuple of them and returns the outputs as a tuple; the state is a tuple of ``num_states``
    arrays (``states``; assign a tuple to set them).
    """

    step_fn = staticmethod(steps.flexsn_step)
    arg_checks = {"core": C.plain_function, "num_states": C.int_at_least(0),
                  "store_state_seqs": C.boolean}
    record_flag, recorded = "store_state_seqs", None
    finite_state = False   # a user-written step keeps its own arithmetic
    _pack, _unpack, state_seqs = _pack, _unpack, property(_state_seqs)

    def __init__(self, core: Callable, num_states: int, static_inputs: Sequence[Any] = (),
                 step_mode: str = "m", store_state_seqs: bool = False, *, backend: str = "auto"):
        self.core, self.num_states = core, num_states
        super().__init__(step_mode, backend)
        statics = tuple(static_inputs)
        for i, s in enumerate(statics):
            setattr(self, f"_static_input_{i}", _static("FlexSN", f"static_inputs[{i}]", s))
        self.num_static_inputs = len(statics)
        # per instance (the core's static inputs), shadowing the class attribute
        self.param_names = tuple(f"_static_input_{i}"  # pyright: ignore[reportAttributeAccessIssue]
                                 for i in range(self.num_static_inputs))
        self.num_inputs = C.core_input_count(core, self.num_states, self.num_static_inputs)
        self.num_outputs = C.core_output_count(core, self.num_inputs + self.num_states
                                          + self.num_static_inputs, self.num_states)
        self.store_state_seqs = store_state_seqs
        self._tree = jax.tree_util.tree_structure((0,) * self.num_states)
        for i in range(self.num_states):
            self.register_memory(f"_state_{i}", 0.0)

    @classmethod
    def from_step(cls, step: Callable[[Any, Any, Any], tuple[Any, Any]],
                  init_state: Callable[[Array], Any], params: dict | None = None, *,
                  step_mode: str = "m", store_state_seqs: bool = False,
                  backend: str = "auto") -> "NativeFlexSN":
        """A FlexSN from a native ``step(state, x, params) -> (state, out)``.

        ``init_state(x)`` builds the initial state from one step of input; ``params`` is a dict of
        arrays / numbers / ``nnx.Param`` (learnable) handed to every step.
        """
        return NativeFlexSN(step, init_state, params or {}, step_mode=step_mode,
                            store_state_seqs=store_state_seqs, backend=backend)

    def step_config(self) -> dict:
        return {"core": self.core, "num_outputs": self.num_outputs}

    static_inputs = property(lambda self: tuple(self.params().values()))   # current values

    def init_state(self, x: Any) -> tuple:
        """Zeros for every state, shaped like (the first of) the step input(s) ``x``."""
        return super().init_state(x[0] if isinstance(x, (tuple, list)) else x)

    def _inputs(self, inputs: tuple) -> tuple:
        shapes = sorted({tuple(np.shape(a)) for a in inputs})
        if len(inputs) != self.num_inputs or len(shapes) != 1:
            raise ValueError(f"FlexSN: core takes {self.num_inputs} step input(s) of one shape, "
                             f"got {len(inputs)} of shapes {shapes}")
        return tuple(inputs)

    def __call__(self, *inputs: Array) -> Any:
        """The stateful call on the step inputs (``[N, *]`` each in ``'s'`` mode, ``[T, N, *]`` in
        ``'m'``): one array per output, a tuple when there are several."""
        outs = super().__call__(self._inputs(inputs))
        return outs[0] if len(outs) == 1 else outs

    @property
    def states(self) -> tuple:
        """The current states; assign a tuple of ``num_states`` arrays to set them."""
        return self.state

    @states.setter
    def states(self, value: Sequence[Array]) -> None:
        if len(value := tuple(jnp.asarray(v) for v in value)) != self.num_states:
            raise ValueError(f"FlexSN: states must be a tuple of {self.num_states} arrays, got "
                             f"{len(value)}")
        self.state = value


class NativeFlexSN(MemoryModule):
    """FlexSN over a native ``step(state, x, params) -> (state, out)`` (:meth:`FlexSN.from_step`).

    Args:
      step: ``step(state, x, params) -> (state, out)``, any pytree state, input and output
        (required).
      init_state: ``init_state(x)`` -> the initial state for one step of input ``x`` (required).
      params: dict of arrays / numbers / ``nnx.Param`` (learnable) handed to every step (required).
      step_mode: ``'m'`` (inputs ``[T, N, *]``) or ``'s'`` (``[N, *]``) (default ``'m'``;
        keyword-only).
      store_state_seqs: ``True`` / ``False``: keep every step's states in ``state_seqs`` (default
        ``False``; keyword-only).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    The state structure is ``init_state``'s on a unit probe; each leaf is a state variable
    ``_state_<i>`` whose reset value is the probe's (first) value.
    """

    arg_checks = {"native_step": C.function, "init_state_fn": C.function,
                  "store_state_seqs": C.boolean}
    record_flag, recorded = "store_state_seqs", None
    _pack, _unpack, state_seqs = _pack, _unpack, property(_state_seqs)

    def __init__(self, step: Callable, init_state: Callable[[Array], Any], params: dict, *,
                 step_mode: str = "m", store_state_seqs: bool = False, backend: str = "auto"):
        super().__init__(step_mode, backend)
        self.native_step, self.init_state_fn = step, init_state
        self.param_names = tuple(params)  # pyright: ignore[reportAttributeAccessIssue] (per instance)
        for name, value in params.items():
            setattr(self, name, _static(type(self).__name__, f"params[{name!r}]", value))
        self.store_state_seqs = store_state_seqs
        with jax.ensure_compile_time_eval():   # a concrete probe, also under nnx.eval_shape
            probe = init_state(jnp.zeros((1,), jnp.float32))
        leaves, self._tree = jax.tree_util.tree_flatten(probe)
        for i, leaf in enumerate(leaves):
            self.register_memory(f"_state_{i}", np.ravel(leaf)[0] if np.size(leaf) else 0.0)

    def bound_step(self) -> steps.BoundStep:
        return steps.BoundStep(self.native_step)

    def init_state(self, x: Any) -> Any:
        return self.init_state_fn(as_input(x, type(self).__name__))


__all__ = ["FlexSN", "FlexSNKernel", "NativeFlexSN", "StaticInput"]
