"""FlexSN's steps: a user-written SpikingJelly-style ``core`` as a ``step(state, x, params)``.

``core(*step_inputs, *states, *static_inputs) -> (*outputs, *new_states)`` works on per-step
arrays (one time slice ``[N, *]``), elementwise. States, inputs and static inputs are tuples in
the step; outputs come back as a tuple.
"""
from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp

from snnjax.steps.common import state_dtype


def core_step(state: tuple, x: tuple, params: tuple, *, core: Callable,
              num_outputs: int) -> tuple[tuple, tuple]:
    """``core(*x, *state, *params)`` split into ``(new_states, outputs)``, values as ``core`` made
    them (``FlexSNKernel``'s step)."""
    res = core(*x, *state, *params)
    res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
    return tuple(res[num_outputs:]), tuple(res[:num_outputs])


def flexsn_step(state: tuple, x: Any, params: dict, *, core: Callable,
                num_outputs: int) -> tuple[tuple, tuple]:
    """FlexSN's step: :func:`core_step` computed in ``state_dtype`` of the first input.

    ``x``: one input array or a tuple of them (same shape ``[N, *]``); ``params``:
    ``{"_static_input_<i>": value}`` (scalars or ``[N, *]``), handed to ``core`` in index order.
    Returns the new states in the compute dtype and the outputs in the first input's dtype.
    """
    xs = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    dt = state_dtype(xs[0].dtype)
    statics = tuple(jnp.asarray(params[f"_static_input_{i}"]).astype(dt)
                    for i in range(len(params)))
    new, outs = core_step(tuple(state), tuple(a.astype(dt) for a in xs), statics, core=core,
                          num_outputs=num_outputs)
    return tuple(s.astype(dt) for s in new), tuple(o.astype(xs[0].dtype) for o in outs)


__all__ = ["core_step", "flexsn_step"]
