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

import inspect
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import kernels
from snnjax.neuron.base import Array, MemoryModule, StateSequence, check_choice
from snnjax.steps import state_dtype


class StaticInput(nnx.Variable):
    """A non-learnable static input of a FlexSN core (SpikingJelly registers it as a buffer)."""


def core_input_count(core: Callable, num_states: int, num_static: int) -> int:
    """Number of step inputs of a SpikingJelly-style core, counted like the reference.

    Positional parameters (defaulted ones included) minus states minus static inputs;
    keyword-only parameters are ignored.
    """
    try:
        sig = inspect.signature(core)
    except (TypeError, ValueError) as e:
        raise TypeError(f"FlexSN: cannot read the signature of core {core!r}: {e}") from None
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        raise TypeError("FlexSN: core must not take *args; list its inputs, states and static "
                        "inputs as positional parameters")
    n_pos = sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for k in kinds)
    n_in = n_pos - num_states - num_static
    if n_in <= 0:
        raise ValueError(f"FlexSN: core must accept at least one step input; it has {n_pos} "
                         f"positional parameters for num_states={num_states} and "
                         f"{num_static} static inputs")
    return n_in


def core_to_step(core: Callable, num_inputs: int, num_states: int,
                 num_outputs: int) -> Callable:
    """Wrap ``core(*xs, *states, *statics) -> (*outs, *states)`` as ``step(state, x, params)``.

    ``state``, ``x`` and ``params`` are tuples; the returned ``out`` is a tuple of outputs.
    """
    def step(state: tuple, x: tuple, params: tuple) -> tuple[tuple, tuple]:
        res = core(*x, *state, *params)
        res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
        return tuple(res[num_outputs:]), tuple(res[:num_outputs])

    step.__name__ = getattr(core, "__name__", "core")
    step.__qualname__ = f"flexsn_step[{step.__name__}]"
    return step


def _count_outputs(core: Callable, num_inputs: int, num_states: int, num_static: int) -> int:
    unit = jax.ShapeDtypeStruct((1,), jnp.float32)
    try:
        res = jax.eval_shape(lambda *a: core(*a), *([unit] * (num_inputs + num_states + num_static)))
    except Exception as e:  # the reference re-raises construction-time failures the same way
        raise RuntimeError(f"FlexSN: core must run on construction-time unit arrays of shape (1,); "
                           f"it raised {type(e).__name__}: {e}") from e
    res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
    if len(res) < num_states:
        raise ValueError(f"FlexSN: core returned {len(res)} values but num_states={num_states}; "
                         f"it must return (*outputs, *new_states)")
    for r in res:
        if not jnp.issubdtype(r.dtype, jnp.floating):
            raise ValueError(f"FlexSN: every value core returns must be floating point, got "
                             f"{r.dtype} (cast spikes, e.g. (h >= 1).astype(h.dtype))")
    return len(res) - num_states


class FlexSN(MemoryModule):
    """A spiking neuron defined by a user step function (SpikingJelly's ``FlexSN``).

    Args:
      core: ``core(*step_inputs, *states, *static_inputs) -> (*outputs, *new_states)``; all
        arguments are per-step arrays (one time slice, ``[N, *]``), computed elementwise.
      num_states: number of states (they start at zeros shaped like the first input's step).
      static_inputs: arrays (or ``nnx.Param`` for learnable ones) passed to every step, each a
        scalar or of the per-step shape; available as ``_static_input_<i>``.
      step_mode: ``'m'`` (default: inputs ``[T, N, *]``) or ``'s'`` (``[N, *]``).
      store_state_seqs: keep every step's states in ``state_seqs`` in multi-step calls.
      backend: ``'auto'`` (fused kernels on GPU, ``lax.scan`` elsewhere), ``'pallas'``, ``'scan'``.

    Call with the step inputs (``f(x_seq)`` or ``f(x_seq, y_seq)``); returns one array per output
    (a tuple when there are several, ``()`` when none).
    """

    def __init__(self, core: Callable, num_states: int, static_inputs: Sequence[Any] = (),
                 step_mode: str = "m", store_state_seqs: bool = False, *, backend: str = "auto"):
        if not callable(core) or isinstance(core, nnx.Module):
            raise TypeError(f"FlexSN: core must be a plain function, got {core!r}")
        if isinstance(num_states, bool) or not isinstance(num_states, (int, np.integer)) \
                or num_states < 0:
            raise ValueError(f"FlexSN: num_states must be a non-negative int, got {num_states!r}")
        super().__init__(step_mode=step_mode, backend=backend)
        self.num_states = int(num_states)
        statics = tuple(static_inputs)
        for i, s in enumerate(statics):
            if isinstance(s, nnx.Variable):
                var = s if isinstance(s, nnx.Param) else StaticInput(jnp.asarray(s.get_value()))
            elif isinstance(s, (jax.Array, np.ndarray, float, int)) and not isinstance(s, bool):
                var = StaticInput(jnp.asarray(s))
            else:
                raise TypeError(f"FlexSN: static_inputs[{i}] must be an array, a number or an "
                                f"nnx.Param, got {type(s).__name__}")
            setattr(self, f"_static_input_{i}", var)
        self.num_static_inputs = len(statics)
        self.num_inputs = core_input_count(core, self.num_states, self.num_static_inputs)
        self.num_outputs = _count_outputs(core, self.num_inputs, self.num_states,
                                          self.num_static_inputs)
        self.core = core
        self._step = core_to_step(core, self.num_inputs, self.num_states, self.num_outputs)
        self.store_state_seqs = bool(store_state_seqs)
        self.state_seq = StateSequence(None)

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

    # -- MemoryModule hooks ----------------------------------------------------------------------

    @property
    def static_inputs(self) -> tuple:
        return tuple(getattr(self, f"_static_input_{i}").get_value()
                     for i in range(self.num_static_inputs))

    def params(self) -> dict:
        return {f"_static_input_{i}": v for i, v in enumerate(self.static_inputs)}

    def init_state(self, x: Any) -> tuple:
        x0 = x[0] if isinstance(x, (tuple, list)) else x
        x0 = jnp.asarray(x0)
        return tuple(jnp.zeros(x0.shape, state_dtype(x0.dtype)) for _ in range(self.num_states))

    def single_step_functional(self, state: tuple, x: Any, params: dict) -> tuple[tuple, tuple]:
        xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        statics = tuple(params[f"_static_input_{i}"] for i in range(self.num_static_inputs))
        compute = state_dtype(xs[0].dtype)
        new_state, outs = self._step(tuple(state), tuple(a.astype(compute) for a in xs),
                                     tuple(jnp.asarray(s).astype(compute) for s in statics))
        return (tuple(s.astype(compute) for s in new_state),
                tuple(o.astype(xs[0].dtype) for o in outs))

    # -- calls -------------------------------------------------------------------------------------

    def _check_inputs(self, inputs: tuple) -> None:
        if len(inputs) != self.num_inputs:
            raise ValueError(f"FlexSN: core takes {self.num_inputs} step input(s), got "
                             f"{len(inputs)}")
        shapes = {tuple(np.shape(a)) for a in inputs}
        if len(shapes) != 1:
            raise ValueError(f"FlexSN: all step inputs must have the same shape, got "
                             f"{sorted(shapes)}")

    @staticmethod
    def _unpack(outs: tuple) -> Any:
        return outs[0] if len(outs) == 1 else tuple(outs)

    def single_step_forward(self, *inputs: Array) -> Any:
        self._check_inputs(inputs)
        self.state_seq.set_value(None)
        return self._unpack(super().single_step_forward(tuple(inputs)))

    def multi_step_forward(self, *inputs: Array) -> Any:
        self._check_inputs(inputs)
        x_seq = tuple(inputs)
        self._check_sequence(x_seq)
        state = self._stored_state(tuple(a[0] for a in x_seq))
        state_seq, outs = self.multi_step(state, x_seq, return_state_seq=self.store_state_seqs)
        if self.store_state_seqs:
            self.state_seq.set_value(state_seq)
            state = tuple(s[-1] for s in state_seq)
        else:
            self.state_seq.set_value(None)
            state = state_seq
        self.memory.set_value(state)
        return self._unpack(outs)

    @property
    def states(self) -> tuple | None:
        """The current states (``None`` before the first call); assign a tuple to set them."""
        return self.memory.get_value()

    @states.setter
    def states(self, value: Sequence[Array]) -> None:
        value = tuple(value)
        if len(value) != self.num_states:
            raise ValueError(f"FlexSN: states must be a tuple of {self.num_states} arrays, got "
                             f"{len(value)}")
        self.memory.set_value(tuple(jnp.asarray(v) for v in value))

    @property
    def state_seqs(self) -> tuple | None:
        """Every step's states of the last multi-step call (with ``store_state_seqs=True``)."""
        return self.state_seq.get_value()

    def reset(self) -> None:
        super().reset()
        self.state_seq.set_value(None)


class NativeFlexSN(MemoryModule):
    """FlexSN over a native ``step(state, x, params) -> (state, out)``; see :meth:`FlexSN.from_step`."""

    def __init__(self, step: Callable, init_state: Callable[[Array], Any], params: dict, *,
                 step_mode: str = "m", store_state_seqs: bool = False, backend: str = "auto"):
        if not callable(step) or not callable(init_state):
            raise TypeError("FlexSN.from_step: step and init_state must be callables")
        super().__init__(step_mode=step_mode, backend=backend)
        self.step_fn = step
        self.init_state_fn = init_state
        self.param_names = tuple(params)
        for name, value in params.items():
            setattr(self, name, value if isinstance(value, nnx.Variable)
                    else StaticInput(jnp.asarray(value)))
        self.store_state_seqs = bool(store_state_seqs)
        self.state_seq = StateSequence(None)

    def params(self) -> dict:
        return {n: getattr(self, n).get_value() for n in self.param_names}

    def init_state(self, x: Any) -> Any:
        return self.init_state_fn(x)

    def single_step_functional(self, state: Any, x: Any, params: dict) -> tuple[Any, Any]:
        return self.step_fn(state, x, params)

    def multi_step_forward(self, x_seq: Any) -> Any:
        if not self.store_state_seqs:
            self.state_seq.set_value(None)
            return super().multi_step_forward(x_seq)
        self._check_sequence(x_seq)
        state = self._stored_state(jax.tree_util.tree_map(lambda a: a[0], x_seq))
        state_seq, out = self.multi_step(state, x_seq, return_state_seq=True)
        self.memory.set_value(jax.tree_util.tree_map(lambda a: a[-1], state_seq))
        self.state_seq.set_value(state_seq)
        return out

    @property
    def state_seqs(self) -> Any:
        return self.state_seq.get_value()

    def reset(self) -> None:
        super().reset()
        self.state_seq.set_value(None)


class FlexSNKernel:
    """The low-level callable around the generated kernels (no module state).

    ``FlexSNKernel(core, num_inputs, num_states, num_outputs, num_static_inputs=0,
    store_state_seqs=False, backend='auto')`` then
    ``kernel(*input_seqs, *initial_states, *static_inputs) -> (*output_seqs, *final_states)``,
    or ``(*output_seqs, *state_seqs)`` with ``store_state_seqs=True``. Input sequences are
    ``[T, N, *]``; states and static inputs ``[N, *]`` (static inputs may also be scalars).
    Differentiable w.r.t. every argument (``jax.custom_vjp`` around the kernels).
    """

    def __init__(self, core: Callable, num_inputs: int, num_states: int, num_outputs: int,
                 num_static_inputs: int = 0, store_state_seqs: bool = False, *,
                 backend: str = "auto"):
        for name, value, low in (("num_inputs", num_inputs, 1), ("num_states", num_states, 0),
                                 ("num_outputs", num_outputs, 0),
                                 ("num_static_inputs", num_static_inputs, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"FlexSNKernel: {name} must be an int >= {low}, got {value!r}")
        self.num_inputs, self.num_states = int(num_inputs), int(num_states)
        self.num_outputs, self.num_static_inputs = int(num_outputs), int(num_static_inputs)
        self.store_state_seqs = bool(store_state_seqs)
        self.backend = kernels.check_backend(backend)
        self.step = core_to_step(core, self.num_inputs, self.num_states, self.num_outputs)

    def __call__(self, *args: Array) -> tuple:
        n_i, n_s, n_p = self.num_inputs, self.num_states, self.num_static_inputs
        if len(args) != n_i + n_s + n_p:
            raise ValueError(f"FlexSNKernel: expected {n_i} input sequence(s), {n_s} state(s) and "
                             f"{n_p} static input(s) ({n_i + n_s + n_p} arrays), got {len(args)}")
        xs, states, statics = args[:n_i], args[n_i:n_i + n_s], args[n_i + n_s:]
        for a in xs:
            if np.ndim(a) < 2:
                raise ValueError(f"FlexSNKernel: input sequences must be [T, N, *], got shape "
                                 f"{tuple(np.shape(a))}")
        res_state, outs = kernels.multi_step(self.step, tuple(states), tuple(xs), tuple(statics),
                                             backend=self.backend,
                                             return_state_seq=self.store_state_seqs)
        return tuple(outs) + tuple(res_state)
