"""Sequence engines: run a per-step neuron function over time.

``multi_step`` is the single entry point used by every neuron module. The ``'scan'`` backend
(``lax.scan``) defines the semantics; the ``'pallas'`` backend generates fused kernels from the
same step function.
"""
from __future__ import annotations

from typing import Any

from snnjax.kernels.scan import Step, scan_multi_step

BACKENDS = ("auto", "scan", "pallas")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def multi_step(step: Step, state0: Any, xs: Any, params: Any = (), *, backend: str = "auto",
               return_state_seq: bool = False) -> tuple[Any, Any]:
    """Run ``step(state, x, params) -> (state, out)`` over the leading time axis of ``xs``.

    Returns ``(final_state, outs)``, or ``(state_seq, outs)`` with ``return_state_seq=True``.
    ``backend``: ``'scan'`` (``lax.scan``), ``'pallas'`` (fused kernels; interpret mode on CPU)
    or ``'auto'`` (kernels on GPU when the step can be lowered, ``lax.scan`` elsewhere).
    """
    check_backend(backend)
    return scan_multi_step(step, state0, xs, params, return_state_seq=return_state_seq)


__all__ = ["BACKENDS", "Step", "check_backend", "multi_step", "scan_multi_step"]
