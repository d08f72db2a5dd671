"""The reference sequence engine: a step function under ``lax.scan``.

Every other backend (the generated Pallas kernels) is tested against this one.

Memory: the backward pass keeps only the inputs (``xs``, ``state0``, ``params``). The whole time
loop is a ``jax.checkpoint`` that saves nothing else, and its step is a checkpoint too, so the
recomputation in the backward keeps one carry per step (the state) and re-runs each step's
forward from it. Values and gradients are the plain scan's (the same operations run again).
Sequences of at most ``UNROLL_MAX`` steps are unrolled: XLA then frees per-step buffers that a
loop keeps for the whole sequence. Both apply from ``RECOMPUTE_MIN_ELEMENTS`` input elements per
step on (so the strategy does not depend on ``T``): below that the buffers are small and the
plain loop compiles faster (the golden scan-path tests took about half the CPU time with it).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Step = Callable[[Any, Any, Any], tuple[Any, Any]]
RECOMPUTE = True      # the memory-saving backward (module switch, for tests and benchmarks)
UNROLL_MAX = 32       # full unrolling up to this many steps (when RECOMPUTE)
RECOMPUTE_MIN_ELEMENTS = 1 << 12   # smaller steps (input elements per step) keep the plain loop

_NOTHING = jax.checkpoint_policies.nothing_saveable


def scan_multi_step(step: Step, state0: Any, xs: Any, params: Any = (), *,
                    return_state_seq: bool = False, unroll: int = 1) -> tuple[Any, Any]:
    """Run ``step(state, x, params) -> (state, out)`` over the leading (time) axis of ``xs``.

    Args:
      step: the pure per-step function.
      state0: pytree of arrays, each ``[N, *]``.
      xs: pytree of arrays, each ``[T, N, *]``.
      params: pytree passed unchanged to every step.
      return_state_seq: if True return the state after every step (``[T, N, *]`` leaves)
        instead of the final state.
      unroll: ``lax.scan``'s unroll (short sequences are fully unrolled anyway, see the module).

    Returns:
      ``(final_state, outs)`` or ``(state_seq, outs)``; ``outs`` leaves are ``[T, N, *]``.
    """
    def body(state, x):
        new_state, out = step(state, x, params)
        return new_state, (out, new_state if return_state_seq else None)

    leaves = jax.tree_util.tree_leaves(xs)
    T = leaves[0].shape[0] if leaves else 0
    recompute = RECOMPUTE and T > 0 and sum(a.size for a in leaves) // T >= RECOMPUTE_MIN_ELEMENTS

    def run(state0, xs):
        if not recompute:
            return jax.lax.scan(body, state0, xs, unroll=unroll)
        full = 0 < T <= UNROLL_MAX
        return jax.lax.scan(jax.checkpoint(body, prevent_cse=full, policy=_NOTHING), state0, xs,
                            unroll=True if full else unroll)

    if recompute:
        run = jax.checkpoint(run, policy=_NOTHING)
    final_state, (outs, state_seq) = run(state0, xs)
    return (state_seq if return_state_seq else final_state), outs
