"""The reference sequence engine: a step function under ``lax.scan``.

Every other backend (the generated Pallas kernels) is tested against this one.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Step = Callable[[Any, Any, Any], tuple[Any, Any]]


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
      unroll: steps per ``lax.scan`` iteration, a positive int (default ``1``).

    Returns:
      ``(final_state, outs)`` or ``(state_seq, outs)``; ``outs`` leaves are ``[T, N, *]``.
    """
    def body(state, x):
        new_state, out = step(state, x, params)
        return new_state, (out, new_state if return_state_seq else None)

    final_state, (outs, state_seq) = jax.lax.scan(body, state0, xs, unroll=unroll)
    return (state_seq if return_state_seq else final_state), outs
