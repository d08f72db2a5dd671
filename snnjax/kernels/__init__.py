"""Sequence engines: run a per-step neuron function over time.

``multi_step`` is the single entry point used by every neuron module. The ``'scan'`` backend
(``lax.scan``) defines the semantics; the ``'pallas'`` backend generates fused kernels from the
same step function.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Iterator

import jax
import jax.numpy as jnp

from snnjax.kernels import sharding
from snnjax.kernels.generator import check_config, check_step, pallas_multi_step, warn_once
from snnjax.kernels.jaxpr_tools import KernelLoweringError
from snnjax.kernels.loops import Config
from snnjax.kernels.scan import Step, scan_multi_step

BACKENDS = ("auto", "scan", "pallas")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def on_gpu() -> bool:
    """True when JAX's default backend is a GPU (kernels run compiled, not interpreted)."""
    return jax.default_backend() == "gpu"


def _any_float64(*trees: Any) -> bool:
    return any(getattr(leaf, "dtype", None) == jnp.float64
               for leaf in jax.tree_util.tree_leaves(trees))


_overrides: contextvars.ContextVar[dict] = contextvars.ContextVar("snnjax_kernel_config",
                                                                default={})


@contextlib.contextmanager
def default_config(**overrides: Any) -> Iterator[None]:
    """Kernel options for every ``multi_step`` traced inside the block that passes no
    ``config`` (neuron modules included), e.g. ``with default_config(chunk=16):``.

    Keys are ``Config`` fields; ``interpret`` still defaults to "no GPU". Like JAX's own
    configuration contexts it acts at trace time: a function jitted outside the block keeps the
    kernels it was compiled with.
    """
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"default_config: unknown Config fields {sorted(unknown)}; "
                         f"allowed: {sorted(fields)}")
    check_config(Config(**overrides))   # bad values fail here, not at the first kernel
    token = _overrides.set({**_overrides.get(), **overrides})
    try:
        yield
    finally:
        _overrides.reset(token)


def current_config() -> Config:
    """The ``Config`` a ``multi_step`` without ``config`` uses here (see ``default_config``)."""
    return Config(**{"interpret": not on_gpu(), **_overrides.get()})


def multi_step(step: Step, state0: Any, xs: Any, params: Any = (), *, backend: str = "auto",
               return_state_seq: bool = False, config: Config | None = None) -> tuple[Any, Any]:
    """Run ``step(state, x, params) -> (state, out)`` over the leading time axis of ``xs``.

    Returns ``(final_state, outs)``, or ``(state_seq, outs)`` with ``return_state_seq=True``.
    ``backend``: ``'scan'`` (``lax.scan``), ``'pallas'`` (fused kernels; interpret mode on CPU)
    or ``'auto'`` (kernels on GPU when the step can be lowered, ``lax.scan`` elsewhere).
    ``xs`` leaves are ``[T, *S]``, ``state0`` leaves ``S``, ``params`` leaves scalars or ``S``.
    ``config``: kernel options (block size, warps, time steps per chunk, residual strategy);
    ``interpret`` defaults to "no GPU".
    A step the kernel generator cannot lower raises ``KernelLoweringError`` under ``'pallas'``;
    under ``'auto'`` it warns once and uses ``lax.scan``.
    """
    check_backend(backend)
    engine, kw = _engine(step, state0, xs, params, backend, config)
    # on sharded operands: per shard, in every mesh context (kernels/sharding.py)
    return sharding.call(engine, step, state0, xs, params, return_state_seq=return_state_seq,
                         **kw)


def _engine(step: Step, state0: Any, xs: Any, params: Any, backend: str,
            config: Config | None) -> tuple[Any, dict]:
    """The engine ``multi_step`` dispatches to, with its extra keywords."""
    if backend == "scan" or (backend == "auto" and (not on_gpu() or _any_float64(state0, xs))):
        # float64 kernels are not built for GPUs: 'auto' keeps x64 runs on lax.scan.
        return scan_multi_step, {}
    cfg = config if config is not None else current_config()
    if backend == "auto":
        try:
            check_step(step, state0, xs, params, cfg)
        except KernelLoweringError as e:
            warn_once(step, e)
            return scan_multi_step, {}
    return pallas_multi_step, {"config": cfg}


__all__ = ["BACKENDS", "Config", "KernelLoweringError", "Step", "check_backend", "current_config",
           "default_config", "multi_step", "on_gpu", "pallas_multi_step", "scan_multi_step"]
