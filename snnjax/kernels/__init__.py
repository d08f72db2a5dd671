"""Sequence engines: run a per-step neuron function over time.

``multi_step`` is the single entry point used by every neuron module. The ``'scan'`` backend
(``lax.scan``) defines the semantics; the ``'pallas'`` (Pallas' Triton lowering) and ``'mosaic'``
(Pallas' Mosaic GPU lowering) backends generate fused kernels from the same step function.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from typing import Any, Iterator

import jax
import jax.numpy as jnp

from snnjax.kernels import sharding
from snnjax.kernels.generator import (CHECKPOINTS_NAME, backend_available, check_config, check_step,
                                      pallas_multi_step, warn_once)
from snnjax.kernels.jaxpr_tools import KernelLoweringError
from snnjax.kernels.loops import Config
from snnjax.kernels.scan import Step, scan_multi_step

BACKENDS = ("auto", "scan", "pallas", "mosaic")
# kernel backend (``Config.backend``) of each kernel ``multi_step`` backend
_KERNEL = {"pallas": "triton", "mosaic": "mosaic"}
# 'auto' on CUDA sm90+: the Mosaic kernels (LIF T=16, N=8M on the H200: forward+backward as
# fast as Triton, first call at T=64 0.84 vs 0.54 s), except for the steps measured more than 2%
# slower there than on Triton in both of two runs (forward+backward, T=16, N=8M, default chunks;
# ``benchmarks/backend_table.py --time``, benchmarks/RESULTS.md), which keep Triton
AUTO_PREFERS_MOSAIC = True
AUTO_TRITON_STEPS = frozenset({
    "snnjax.steps.adaptive.izhikevich_step",   # Mosaic / Triton 1.04, 1.03
    "snnjax.steps.lif_variants.klif_step",     # 1.08, 1.05
    "snnjax.steps.lif_variants.liaf_step",     # 1.04, 1.06
})


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else ``ValueError``.

    Args:
      backend: ``'auto'``, ``'scan'``, ``'pallas'`` or ``'mosaic'``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def on_gpu() -> bool:
    """True when JAX's default backend is a GPU (kernels run compiled, not interpreted)."""
    return jax.default_backend() == "gpu"


def step_name(step: Any) -> str:
    """``module.qualname`` of a step function (of a ``BoundStep``'s function): the key of
    :data:`AUTO_TRITON_STEPS`.

    Args:
      step: a step function or a ``BoundStep``.
    """
    fn = getattr(step, "fn", step)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _cuda_major() -> int:
    """The default device's CUDA compute capability major version (0: none, e.g. CPU, ROCm)."""
    try:
        cc = getattr(jax.devices()[0], "compute_capability", None)
        return int(str(cc).split(".")[0]) if cc is not None else 0
    except Exception:
        return 0


def auto_kernel_backend(step: Any = None) -> str:
    """The kernel backend ``'auto'`` uses on this GPU (for ``step``, if given): ``'mosaic'`` on
    CUDA compute capability 9.0 or newer (Hopper+), except for the steps in
    :data:`AUTO_TRITON_STEPS`; else ``'triton'`` (older GPUs, ROCm).

    Args:
      step: the step function (or ``BoundStep``), or ``None`` for the device's default.
    """
    if (AUTO_PREFERS_MOSAIC and _cuda_major() >= 9 and backend_available("mosaic")
            and (step is None or step_name(step) not in AUTO_TRITON_STEPS)):
        return "mosaic"
    return "triton"


def _triton_only(cfg: Config) -> bool:
    """Whether ``cfg`` sets an option only the Triton kernels have (warps, stages, the aliased
    cotangent, a block below one warpgroup): ``'auto'`` then runs Triton."""
    return (cfg.num_warps is not None or cfg.num_stages is not None or cfg.alias_cotangent
            or (cfg.block_n is not None and cfg.block_n < 128))


def _kernel_config(step: Step, state0: Any, xs: Any, params: Any, backend: str,
                   config: Config | None) -> Config | None:
    """The ``Config`` of the kernels that run ``step`` for ``backend`` (after fallbacks), or None
    for ``lax.scan``. ``'mosaic'`` that cannot lower the step warns once and uses Triton (or
    ``lax.scan`` where the installed JAX has no Triton lowering); ``'pallas'`` raises
    ``KernelLoweringError``; ``'auto'`` tries its kernel backend, then Triton, then scan."""
    cfg = check_config(config) if config is not None else current_config()
    if backend == "auto":
        kernel = auto_kernel_backend(step)
        # Triton where a Triton-only option is set, or inside a shard_map over varying axes
        # (where the Mosaic kernels do not run: kernels/sharding.py)
        if kernel == "mosaic" and (_triton_only(cfg)
                                   or sharding.varying_axes(state0, xs, params)):
            kernel = "triton"
    else:
        kernel = _KERNEL[backend]
    cfg = dataclasses.replace(cfg, backend=kernel)
    if kernel == "mosaic" and cfg.interpret and _under_checkpoint.get():
        err = KernelLoweringError("Mosaic GPU's interpret mode (ordered callbacks) cannot run "
                                  "under jax.checkpoint (layer.Remat, layer.Chunked)")
        tri = dataclasses.replace(cfg, backend="triton")
        try:
            if not backend_available("triton"):
                raise err
            check_step(step, state0, xs, params, tri)
        except KernelLoweringError as e:
            warn_once(step, e)
            return None
        warn_once(step, err, to="the Triton kernels (backend='pallas')")
        return tri
    if backend == "pallas":
        return cfg
    try:
        check_step(step, state0, xs, params, cfg)
        return cfg
    except KernelLoweringError as e:
        if kernel == "triton":          # 'auto' on Triton: scan
            warn_once(step, e)
            return None
        err = e
    tri = dataclasses.replace(cfg, backend="triton")
    try:
        check_step(step, state0, xs, params, tri)
    except KernelLoweringError as e:
        if backend == "mosaic" and backend_available("triton"):
            raise                          # neither lowering can: as 'pallas' would
        warn_once(step, err if backend == "mosaic" else e)
        return None
    if backend == "mosaic":             # 'auto' picks Triton without a word
        warn_once(step, err, to="the Triton kernels (backend='pallas')")
    return tri


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

    Args:
      **overrides: ``Config`` fields and values (``block_n``, ``num_warps``, ``num_stages``,
        ``chunk``, ``residuals``, ``interpret``, ``backend``, ``alias_cotangent``), checked
        as :class:`Config`'s;
        blocks nest, inner values win.
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


_under_checkpoint: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "snnjax_under_checkpoint", default=False)


@contextlib.contextmanager
def under_checkpoint(in_place_backward: bool = False) -> Iterator[None]:
    """Kernel choices for neurons traced inside the block, which snnjax runs under
    ``jax.checkpoint`` (``layer.Remat``, ``layer.Chunked``).

    There Mosaic's interpret mode (its ordered callbacks; no GPU) cannot run: an explicit
    ``backend='mosaic'`` warns once and runs the Triton interpreter (``lax.scan`` without one).
    ``in_place_backward=True``: the backward kernels write the input gradient into the
    incoming cotangent's buffer (``Config.alias_cotangent``; ``'auto'`` then runs the Triton
    kernels), free where the step itself computes the cotangents; unless a ``default_config``
    around the block sets ``alias_cotangent`` or the installed JAX has no Triton lowering.

    Args:
      in_place_backward: set ``alias_cotangent`` for the block (default ``False``).
    """
    token = _under_checkpoint.set(True)
    try:
        if (in_place_backward and "alias_cotangent" not in _overrides.get()
                and backend_available("triton")):
            with default_config(alias_cotangent=True):
                yield
        else:
            yield
    finally:
        _under_checkpoint.reset(token)


def current_config() -> Config:
    """The ``Config`` a ``multi_step`` without ``config`` uses here (see ``default_config``)."""
    return Config(**{"interpret": not on_gpu(), **_overrides.get()})


@functools.lru_cache(maxsize=1024)
def _compiled(step: Step) -> Step:
    return jax.jit(step)


def single_step(step: Step, state: Any, x: Any, params: Any = ()) -> tuple[Any, Any]:
    """``step(state, x, params) -> (state, out)`` once, compiled once per step and static
    configuration (a bound step is hashable by value), so an eager Python loop over single-step
    calls costs one dispatch per call instead of one per operation; inside a trace it inlines.

    Args:
      step: the pure per-step function.
      state: pytree of arrays, each ``[N, *]``.
      x: the step's input, ``[N, *]``.
      params: pytree passed to the step (default ``()``).
    """
    try:
        fn = _compiled(step)
    except TypeError:                    # an unhashable step: run it as it is
        fn = step
    return fn(state, x, params)


def multi_step(step: Step, state0: Any, xs: Any, params: Any = (), *, backend: str = "auto",
               return_state_seq: bool = False, config: Config | None = None) -> tuple[Any, Any]:
    """Run ``step(state, x, params) -> (state, out)`` over the leading time axis of ``xs``.

    Returns ``(final_state, outs)``, or ``(state_seq, outs)`` with ``return_state_seq=True``.
    ``backend``: ``'scan'`` (``lax.scan``), ``'pallas'`` (fused kernels through Pallas' Triton
    lowering; interpret mode on CPU), ``'mosaic'`` (fused kernels through Pallas' Mosaic GPU
    lowering, Hopper+; Mosaic's interpret mode on CPU) or ``'auto'`` (kernels on GPU when the
    step can be lowered -- Mosaic or Triton, ``auto_kernel_backend`` -- ``lax.scan`` elsewhere).
    ``xs`` leaves are ``[T, *S]``, ``state0`` leaves ``S``, ``params`` leaves scalars or ``S``.
    ``config``: kernel options (block size, warps, time steps per chunk, residual strategy);
    ``interpret`` defaults to "no GPU".
    A step the kernel generator cannot lower raises ``KernelLoweringError`` under ``'pallas'``;
    under ``'auto'`` it warns once and uses ``lax.scan``; under ``'mosaic'``, a step only the
    Mosaic lowering cannot take warns once and runs on the Triton kernels
    (``docs/backends.md``). An input with zero neurons (a zero non-time dimension) gives an
    empty result on every backend (no kernel to launch).

    Args:
      step: the pure per-step function ``step(state, x, params) -> (state, out)``.
      state0: pytree of arrays, each ``S`` (``[N, *]``).
      xs: pytree of arrays, each ``[T, *S]``.
      params: pytree of scalars or ``S``-shaped arrays passed to every step (default ``()``).
      backend: ``'auto'``, ``'scan'``, ``'pallas'`` or ``'mosaic'`` (default ``'auto'``).
      return_state_seq: ``True``: return every step's state (``[T, *S]`` leaves) instead of
        the final one (default ``False``).
      config: a :class:`Config`, or ``None`` for :func:`current_config` (default ``None``).

    Returns:
      ``(final_state, outs)`` or ``(state_seq, outs)``; ``outs`` leaves are ``[T, *S]``.
    """
    check_backend(backend)
    engine, kw = _engine(step, state0, xs, params, backend, config)
    # on sharded operands: per shard, in every mesh context (kernels/sharding.py)
    return sharding.call(engine, step, state0, xs, params, return_state_seq=return_state_seq,
                         **kw)


def _engine(step: Step, state0: Any, xs: Any, params: Any, backend: str,
            config: Config | None) -> tuple[Any, dict]:
    """The engine ``multi_step`` dispatches to, with its extra keywords."""
    empty = any(leaf.size == 0 for leaf in jax.tree_util.tree_leaves(xs))   # zero neurons
    if (backend == "scan" or empty
            or (backend == "auto" and (not on_gpu() or _any_float64(state0, xs)))):
        # float64 kernels are not built for GPUs: 'auto' keeps x64 runs on lax.scan.
        return scan_multi_step, {}
    cfg = _kernel_config(step, state0, xs, params, backend, config)
    if cfg is None:
        return scan_multi_step, {}
    return pallas_multi_step, {"config": cfg}


__all__ = ["AUTO_TRITON_STEPS", "BACKENDS", "CHECKPOINTS_NAME", "Config", "KernelLoweringError",
           "Step", "auto_kernel_backend", "step_name", "check_backend", "current_config",
           "default_config", "multi_step", "on_gpu", "single_step",
           "pallas_multi_step", "scan_multi_step", "under_checkpoint"]
