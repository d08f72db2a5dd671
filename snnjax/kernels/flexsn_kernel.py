"""``FlexSNKernel``: SpikingJelly's low-level FlexSN callable, a FlexSN ``core`` run over time by
:func:`snnjax.kernels.multi_step` (the generated kernels on a GPU) with no module state.

It knows no particular neuron: the step is :func:`snnjax.steps.core_step` bound to the user's
core. :class:`snnjax.neuron.FlexSN` is the stateful Flax module around the same step.
"""
from __future__ import annotations

from typing import Callable

import jax

from snnjax import _checks as C
from snnjax import steps
from snnjax.kernels import BACKENDS, multi_step

Array = jax.Array


class FlexSNKernel:
    """The low-level callable around the generated kernels (no module state).

    ``FlexSNKernel(core, num_inputs, num_states, num_outputs, num_static_inputs=0,
    store_state_seqs=False, backend='auto')`` then
    ``kernel(*input_seqs, *initial_states, *static_inputs) -> (*output_seqs, *final_states)``,
    or ``(*output_seqs, *state_seqs)`` with ``store_state_seqs=True``. Input sequences are
    ``[T, N, *]``; states and static inputs ``[N, *]`` (static inputs may also be scalars).
    Differentiable w.r.t. every argument (``jax.custom_vjp`` around the kernels).

    Args:
      core: ``core(*step_inputs, *states, *static_inputs) -> (*outputs, *new_states)``, a plain
        function of per-step arrays, elementwise (required).
      num_inputs: number of input sequences, an int ``>= 1`` (required).
      num_states: number of states, an int ``>= 0`` (required).
      num_outputs: number of outputs, an int ``>= 0`` (required).
      num_static_inputs: number of static inputs, an int ``>= 0`` (default ``0``).
      store_state_seqs: ``True`` / ``False``: return every step's states instead of the final
        ones (default ``False``).
      backend: ``'auto'``, ``'scan'``, ``'pallas'`` or ``'mosaic'`` (default ``'auto'``;
        keyword-only).
    """

    def __init__(self, core: Callable, num_inputs: int, num_states: int, num_outputs: int,
                 num_static_inputs: int = 0, store_state_seqs: bool = False, *,
                 backend: str = "auto"):
        owner = type(self).__name__
        self.num_inputs = C.int_at_least(1)(owner, "num_inputs", num_inputs)
        self.num_states, self.num_outputs, self.num_static_inputs = (
            C.int_at_least(0)(owner, name, value) for name, value in (
                ("num_states", num_states), ("num_outputs", num_outputs),
                ("num_static_inputs", num_static_inputs)))
        self.store_state_seqs = C.boolean(owner, "store_state_seqs", store_state_seqs)
        self.backend = C.choice(BACKENDS)(owner, "backend", backend)
        self.step = steps.BoundStep(steps.core_step, core=C.plain_function(owner, "core", core),
                              num_outputs=self.num_outputs)

    def __call__(self, *args: Array) -> tuple:
        n_i, n_s, n_p = self.num_inputs, self.num_states, self.num_static_inputs
        if len(args) != n_i + n_s + n_p:
            raise ValueError(f"FlexSNKernel: expected {n_i} input sequence(s), {n_s} state(s) and "
                             f"{n_p} static input(s) ({n_i + n_s + n_p} arrays), got {len(args)}")
        xs = C.sequence_input("FlexSNKernel", tuple(args[:n_i]))
        states, statics = args[n_i:n_i + n_s], args[n_i + n_s:]
        res_state, outs = multi_step(self.step, tuple(states), xs, tuple(statics),
                                             backend=self.backend,
                                             return_state_seq=self.store_state_seqs)
        return tuple(outs) + tuple(res_state)


__all__ = ["FlexSNKernel"]
