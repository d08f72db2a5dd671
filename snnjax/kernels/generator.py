"""Kernel generator, host side: step function -> time-loop kernels under ``jax.custom_vjp``.

Pipeline (per step function, pytree structure, dtypes, sizes and ``Config``; cached):

1. ``plan.make_plan`` traces ``jax.vjp`` of the step on rows, checks it is elementwise and
   partitions it; it offers two residual strategies (``'save'``: rows written every step;
   ``'recompute'``: a checkpoint per chunk, the chunk's forward re-run in the backward kernel).
   ``plan.choose_residuals`` picks the one that moves fewer bytes.
2. ``loops.forward_spec`` / ``loops.backward_spec`` describe the inference forward, the
   training forward and the reverse backward kernels independently of the Pallas backend.
3. A backend module (``pallas_triton``, ``pallas_mosaic``; ``Config.backend``) lowers them; this
   module reshapes (and, where the backend needs it, pads) operands, wraps the kernels in
   ``jax.custom_vjp`` and reduces shared-parameter gradients.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, Callable

import jax
import jax.core  # noqa: F401  (jax.core.Tracer below: type checkers need the submodule import)
import jax.numpy as jnp
import numpy as np

from jax.ad_checkpoint import checkpoint_name

from snnjax.kernels.loops import Config, backward_spec, forward_spec
from snnjax.kernels.plan import RESIDUAL_MODES, StepPlan, choose_residuals, make_plan
from snnjax.kernels.sharding import launcher


KERNEL_BACKENDS = ("triton", "mosaic")


def default_block(n: int, interpret: bool, backend: str = "triton") -> int:
    """The default ``block_n`` of ``backend`` for ``n`` neurons (see the backend modules)."""
    return _backend_module(backend).default_block(n, interpret)


def _backend_module(name: str) -> Any:
    if name == "triton":
        from snnjax.kernels import pallas_triton
        return pallas_triton
    if name == "mosaic":
        from snnjax.kernels import pallas_mosaic
        return pallas_mosaic
    raise ValueError(f"unknown kernel backend {name!r}: Config.backend must be one of "
                     f"{KERNEL_BACKENDS}")


def default_chunk(plan: StepPlan) -> int:
    """Time steps per chunk when ``Config.chunk`` is None: 8, or 4 for a step whose
    ``'recompute'`` backward keeps more than one value per step in registers by its equations
    (the chunk's residual rows; fewer live registers). A value kept only for the gradient of a
    learnable hyperparameter does not count. Measured on the H200, forward+backward, T=16,
    N=8M, Triton / Mosaic, chunk 8 -> 4: ComplementaryLIF 0.938 -> 0.888 / 1.048 -> 0.899 ms,
    EIF 0.829 -> 0.780 / 0.905 -> 0.816, QIF 0.794 -> 0.777 / 0.827 -> 0.787, Izhikevich 0.897
    -> 0.889 / 0.916 -> 0.923; every one-value step (LIF 0.735 -> 0.771 / 0.733 -> 0.766, ...)
    is faster at 8, and so is PLIF with a learnable w on Mosaic in all three runs (0.775 ->
    0.786, 0.786 -> 0.791, 0.781 -> 0.785; Triton 0.797 -> 0.789, 0.774 -> 0.799, 0.759 ->
    0.791) (``benchmarks/backend_table.py --time --chunks 8,4``, ``chunk_rule.py``,
    ``policy_cost.py``; ``RESULTS.md``)."""
    learnable = sum(plan.need[plan.n_s + plan.n_x:])
    return 8 if len(plan.recompute.cut) <= 1 + learnable else 4


# ``checkpoint_name`` of a training forward's chunk-start states (``'recompute'`` residuals): a
# rematerialised block that saves them (``layer.Remat``) need not re-run the forward kernel
CHECKPOINTS_NAME = "snnjax_kernel_checkpoints"


def backend_available(name: str) -> bool:
    """Whether the installed JAX has the lowering of kernel backend ``name``."""
    return _backend_module(name).available()


def check_config(cfg: Config) -> Config:
    """Validate ``cfg`` (clear errors naming the field)."""
    if cfg.chunk is not None and (not isinstance(cfg.chunk, int) or isinstance(cfg.chunk, bool)
                                  or cfg.chunk < 1):
        raise ValueError(f"Config.chunk must be a positive int (or None), got {cfg.chunk!r}")
    if cfg.residuals not in RESIDUAL_MODES:
        raise ValueError(f"Config.residuals must be one of {RESIDUAL_MODES}, got {cfg.residuals!r}")
    for name in ("block_n", "num_warps"):
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, int) or v < 1 or v & (v - 1)):
            raise ValueError(f"Config.{name} must be a power of two (or None), got {v!r}")
    if cfg.num_stages is not None and (not isinstance(cfg.num_stages, int) or cfg.num_stages < 1):
        raise ValueError(f"Config.num_stages must be a positive int (or None), "
                         f"got {cfg.num_stages!r}")
    if not isinstance(cfg.alias_cotangent, bool):
        raise TypeError(f"Config.alias_cotangent must be a bool, got {cfg.alias_cotangent!r}")
    _backend_module(cfg.backend)
    return cfg


def supported_primitives(cfg: Config) -> frozenset[str] | None:
    """Primitive names the configured backend lowers (None: everything elementwise). Triton's
    interpret mode runs anything; Mosaic's set applies in interpret mode too, so that a CPU run
    takes the same path (rewrites, fallback) as the GPU."""
    if cfg.interpret and cfg.backend == "triton":
        return None
    return _backend_module(cfg.backend).supported_primitives()


@dataclasses.dataclass(frozen=True)
class Lowering:
    """What the plan needs to know about the kernel backend (hashable; part of cache keys)."""
    row_shape: tuple[int, ...]
    supported: frozenset[str] | None
    rewrites: frozenset[str]

    @staticmethod
    def of(cfg: Config, block_n: int) -> "Lowering":
        mod = _backend_module(cfg.backend)
        return Lowering(mod.row_shape(block_n), supported_primitives(cfg), mod.rewrites())


@functools.lru_cache(maxsize=512)
def _cached_plan(step, defs, cdt, block_n, reread_out, reread_state, supported,
                 need=None, rewrites=None) -> StepPlan:
    """``make_plan``, cached. ``block_n``: an int (rows ``(1, block_n)``) or a row shape."""
    kw = {} if rewrites is None else {"rewrites": rewrites}
    return make_plan(step, defs, cdt, block_n, reread_out, reread_state, supported, need, **kw)


def _plan(step, defs, cdt, low: Lowering, reread_out=None, reread_state=None,
          need=None) -> StepPlan:
    n_s = defs[0].num_leaves
    reread_out = reread_out if reread_out is not None else ()
    reread_state = reread_state if reread_state is not None else (False,) * n_s
    return _cached_plan(step, defs, cdt, low.row_shape, reread_out, reread_state, low.supported,
                        need, low.rewrites)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Sequence length, operand width (``N``, or padded to whole blocks) and block size."""
    T: int
    Np: int
    block_n: int


@dataclasses.dataclass(frozen=True)
class Operands:
    """Dtypes and kinds of the fused function's operand groups (inputs ``xs``, states, params;
    a ``'shared'`` kind is one row for every program, ``'row'`` one value per neuron), the
    outputs' dtype and the compute dtype. Hashable: part of the kernel cache key."""
    x_dtypes: tuple
    s_dtypes: tuple
    s_kinds: tuple
    p_dtypes: tuple
    p_kinds: tuple
    out_dtype: Any
    compute_dtype: Any


@functools.lru_cache(maxsize=512)
def _build(step: Callable, defs: tuple, geom: Geometry, ops: Operands, return_state_seq: bool,
           cfg: Config) -> tuple[Callable, Any]:
    """The ``custom_vjp`` fused function on ``[T, N]`` / ``[1, N]`` operands (unpadded: each
    launch pads per shard, ``sharding.launcher``)."""
    T, block_n = geom.T, geom.block_n
    x_dtypes, s_dtypes, s_kinds = ops.x_dtypes, ops.s_dtypes, ops.s_kinds
    p_dtypes, p_kinds, out_dtype, cdt = ops.p_dtypes, ops.p_kinds, ops.out_dtype, ops.compute_dtype
    n_s = defs[0].num_leaves
    low = Lowering.of(cfg, block_n)
    n_o = _plan(step, defs, cdt, low).n_o
    out_dtypes = (out_dtype,) * n_o
    reread_out = tuple(np.dtype(d) == np.dtype(cdt) for d in out_dtypes)
    reread_state = tuple(return_state_seq and np.dtype(d) == np.dtype(cdt) for d in s_dtypes)
    plan = _plan(step, defs, cdt, low, reread_out, reread_state)
    # unpadded [L, N] operands; each launch pads per shard (partitioned under jax.jit)
    mod = _backend_module(cfg.backend)
    run = launcher(mod.run_loop, T=T, block_n=block_n, cfg=cfg, padded_size=mod.padded_size)
    K = min(cfg.chunk or default_chunk(plan), T)
    n_x = plan.n_x
    sizes = dict(x_itemsizes=tuple(np.dtype(d).itemsize for d in x_dtypes),
                 out_itemsize=np.dtype(out_dtype).itemsize,
                 state_itemsizes=tuple(np.dtype(d).itemsize for d in s_dtypes), chunk_len=K)
    spec_kw: dict[str, Any] = dict(chunk_len=K, return_state_seq=return_state_seq, out_dtypes=out_dtypes,
                   state_dtypes=s_dtypes, p_kinds=p_kinds, s_kinds=s_kinds)
    f_inf = forward_spec(plan, training=False, residuals=plan.save, **spec_kw)

    def training_plan(need):
        tplan = _plan(step, defs, cdt, low, reread_out, reread_state, need)
        return tplan, choose_residuals(tplan, cfg.residuals, **sizes)

    def split(seq_out, row_out):
        """A forward kernel's results as named groups (``forward_spec``'s layout): the outputs,
        the states (final rows, or sequences), then what a training forward adds (saved rows or
        chunk checkpoints)."""
        n_state_seqs = n_s if return_state_seq else 0
        outs = list(seq_out[:n_o])
        states = list(seq_out[n_o:n_o + n_s]) if return_state_seq else list(row_out)
        return outs, states, list(seq_out[n_o + n_state_seqs:])

    @jax.custom_vjp
    def fused(xs, s0, ps):
        seq_out, row_out = run(f_inf, list(xs), list(ps) + list(s0))
        return split(seq_out, row_out)[:2]

    def fused_fwd(xs, s0, ps):
        # symbolic_zeros: leaves carry ``perturbed``; gradients nobody needs are not planned for
        need = tuple(bool(a.perturbed) for a in list(s0) + list(xs) + list(ps))
        xs, s0, ps = ([a.value for a in group] for group in (xs, s0, ps))
        tplan, res = training_plan(need)
        seq_out, row_out = _first_order_only(functools.partial(
            run, forward_spec(tplan, training=True, residuals=res, **spec_kw)))(
                list(xs), list(ps) + list(s0))
        outs, states, extra = split(seq_out, row_out)
        if res.mode == "recompute":
            # checkpoints, then the inputs
            res_arrays = [checkpoint_name(c, CHECKPOINTS_NAME) for c in extra] + list(xs)
        else:
            res_arrays = [{"save": extra, "x": xs, "out": outs, "state": states}[kind][i]
                          for _, (kind, i) in res.cut]
        # the need flags travel as the (static) dict key of the residual pytree
        return (outs, states), {need: (res_arrays, list(ps))}

    def fused_bwd(saved, cts):
        ((need, (res_arrays, ps)),) = saved.items()
        if not any(need):
            return [None] * n_x, [None] * n_s, [None] * len(ps)
        tplan, res = training_plan(need)
        g_outs, g_states = cts
        zero = jax.custom_derivatives.SymbolicZero
        go_present = [not isinstance(g, zero) for g in g_outs]
        gs_present = [not isinstance(g, zero) for g in g_states]
        spec = backward_spec(tplan, residuals=res, chunk_len=K, return_state_seq=return_state_seq,
                             x_dtypes=x_dtypes, state_dtypes=s_dtypes, p_kinds=p_kinds,
                             p_dtypes=p_dtypes, s_kinds=s_kinds, g_out_present=go_present,
                             g_state_present=gs_present)
        g_o = [g for g, p in zip(g_outs, go_present) if p]
        g_s = [g for g, p in zip(g_states, gs_present) if p]
        seq_in = list(res_arrays) + g_o + (g_s if return_state_seq else [])
        row_in = list(ps) + ([] if return_state_seq else g_s)
        g_xs, row_out = _first_order_only(functools.partial(run, spec))(seq_in, row_in)
        g_xs, row_out = iter(g_xs), iter(row_out)
        need_s, need_x, need_p = need[:n_s], need[n_s:n_s + n_x], need[n_s + n_x:]

        def reduce(g, kind):  # a shared row's gradient: one partial sum per program
            return jnp.sum(g, axis=0, keepdims=True) if kind == "shared" else g
        g_s0 = [reduce(next(row_out), k) if n else None for n, k in zip(need_s, s_kinds)]
        g_ps = [reduce(next(row_out), k) if n else None for n, k in zip(need_p, p_kinds)]
        return [next(g_xs) if n else None for n in need_x], g_s0, g_ps

    fused.defvjp(fused_fwd, fused_bwd, symbolic_zeros=True)
    return fused, plan.out_def


def _refuse_higher_order(primals: Any, tangents: Any) -> Any:
    raise NotImplementedError(
        "snnjax kernels: the backward kernels cannot be differentiated again (a gradient of a "
        "gradient, jax.hessian, ...); use backend='scan' for higher-order derivatives")


def _first_order_only(backward: Callable) -> Callable:
    """A kernel launch of the training forward or the backward, refusing differentiation (which
    only a gradient of a gradient attempts) with a clear error instead of a failure deep inside
    Pallas."""
    guarded = jax.custom_jvp(backward)
    guarded.defjvp(_refuse_higher_order)
    return guarded


class _WithConstants:
    """``step`` with its scalar params that are not traced fixed as compile-time constants.

    A hyperparameter given as a Python number (or a concrete scalar array) can carry no gradient;
    as a literal it costs no load and lets the compiler fold it (``x / 2.0`` becomes a multiply),
    exactly as XLA treats it on the ``lax.scan`` path. Hashable: kernels are cached per value.
    """

    __slots__ = ("step", "p_def", "consts", "key")

    def __init__(self, step: Callable, p_def: Any, consts: tuple[tuple[int, Any], ...]):
        self.step, self.p_def, self.consts = step, p_def, consts
        self.key = (step, p_def, tuple((i, type(v).__name__, v) for i, v in consts))

    def __call__(self, state: Any, x: Any, params: Any) -> tuple[Any, Any]:
        leaves, it = [], iter(params)
        fixed = dict(self.consts)
        for i in range(self.p_def.num_leaves):
            leaves.append(fixed[i] if i in fixed else next(it))
        return self.step(state, x, jax.tree_util.tree_unflatten(self.p_def, leaves))

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _WithConstants) and self.key == other.key

    @property
    def __name__(self) -> str:
        return getattr(self.step, "__name__", "step")


def _as_constant(p: Any) -> Any:
    """The Python number an untraced scalar param is baked in as, or None (stays an operand).

    Concrete arrays qualify only with the default float/int dtype or bool, whose Python number
    computes identically (weak typing); kernel bodies then hold plain literals.
    """
    if isinstance(p, (bool, int, float)):
        return p
    if isinstance(p, jax.core.Tracer) or np.ndim(p) != 0:
        return None
    dtype = np.asarray(p).dtype
    if dtype in (np.dtype(jnp.result_type(float)), np.dtype(jnp.result_type(int)), np.bool_):
        return np.asarray(p).item()
    return None


def bind_constants(step: Callable, params: Any) -> tuple[Callable, Any]:
    """``(step', params')``: the untraced scalar leaves of ``params`` moved into ``step`` as
    constants (``_WithConstants``); ``params'`` is the tuple of the remaining leaves."""
    leaves, p_def = jax.tree_util.tree_flatten(params)
    consts = tuple((i, c) for i, c in ((i, _as_constant(p)) for i, p in enumerate(leaves))
                   if c is not None)
    if not consts:
        return step, params
    fixed = {i for i, _ in consts}
    return (_WithConstants(step, p_def, consts),
            tuple(p for i, p in enumerate(leaves) if i not in fixed))


def _float_dtype(d: Any) -> Any:
    return d if jnp.issubdtype(d, jnp.floating) else jnp.result_type(float)


def pallas_multi_step(step: Callable, state0: Any, xs: Any, params: Any = (), *,
                      return_state_seq: bool = False, config: Config = Config()) -> tuple[Any, Any]:
    """Fused-kernel version of ``scan_multi_step`` (same arguments and results).

    ``xs`` leaves ``[T, *S]``; ``state0`` leaves ``S`` (or broadcastable to it; a scalar is
    read as one shared row instead of an ``[N]`` array); ``params``
    leaves scalars (shared by all neurons) or broadcastable to ``S`` (per neuron); scalars that
    are not traced (Python numbers, concrete arrays) become compile-time constants of the
    kernels (``bind_constants``). Outputs have
    the dtype of ``xs``; states keep the dtype of ``state0``; arithmetic is float32 (float64
    when an operand is float64). Raises ``KernelLoweringError`` for a step that is not
    elementwise.

    Args:
      step: the pure per-step function ``step(state, x, params) -> (state, out)``, elementwise.
      state0: pytree of arrays, each ``S`` or broadcastable to it.
      xs: pytree of arrays, each ``[T, *S]``.
      params: pytree of scalars or arrays broadcastable to ``S`` (default ``()``).
      return_state_seq: ``True``: return every step's state instead of the final one.
      config: the kernel :class:`Config` (default ``Config()``).

    Returns:
      ``(final_state, outs)`` or ``(state_seq, outs)``, as :func:`scan_multi_step`.
    """
    cfg = check_config(config)
    step, params = bind_constants(step, params)
    x_leaves, x_def = jax.tree_util.tree_flatten(xs)
    s_leaves, s_def = jax.tree_util.tree_flatten(state0)
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    if not x_leaves:
        raise ValueError("xs must contain at least one array")
    x_leaves = [jnp.asarray(x) for x in x_leaves]
    T, S = x_leaves[0].shape[0], tuple(x_leaves[0].shape[1:])
    for x in x_leaves:
        if tuple(x.shape) != (T,) + S:
            raise ValueError(f"all xs leaves must share the shape [T, *S]; got {x.shape} and "
                             f"{(T,) + S}")
    x_leaves = [x.astype(_float_dtype(x.dtype)) for x in x_leaves]
    s_leaves = [jnp.asarray(s) for s in s_leaves]
    s_leaves = [s.astype(_float_dtype(s.dtype)) for s in s_leaves]
    # a scalar initial state (e.g. 0.0) is one row shared by all programs: no [N] fill/read
    s_kinds = tuple("shared" if s.ndim == 0 else "row" for s in s_leaves)
    p_leaves = [jnp.asarray(p) for p in p_leaves]
    all_dtypes = [a.dtype for a in x_leaves + s_leaves + p_leaves]
    cdt = jnp.dtype(jnp.float64) if any(d == jnp.float64 for d in all_dtypes) \
        else jnp.dtype(jnp.float32)
    out_dtype = jnp.result_type(*[x.dtype for x in x_leaves])
    N = math.prod(S)
    mod = _backend_module(cfg.backend)
    block = cfg.block_n or mod.default_block(N, cfg.interpret)
    mod.check_block(block)
    # no padding here: a padded flat axis would not stay sharded; each launch pads its shard to
    # the backend's width (Triton: whole blocks; Mosaic: N, the tail block overlaps)
    Np = N

    if T == 0:  # nothing to run: let scan define the (empty) result
        from snnjax.kernels.scan import scan_multi_step
        return scan_multi_step(step, state0, xs, params, return_state_seq=return_state_seq)

    xs2 = [x.reshape(T, N) for x in x_leaves]
    s2 = [jnp.broadcast_to(s, (1, block)) if k == "shared"
          else jnp.broadcast_to(s, S).reshape(1, N) for s, k in zip(s_leaves, s_kinds)]
    p2, p_kinds, p_dtypes = [], [], []
    for p in p_leaves:
        pd = jnp.dtype(cdt) if not jnp.issubdtype(p.dtype, jnp.floating) else \
            jnp.promote_types(p.dtype, jnp.float32)
        p = p.astype(pd)
        if p.ndim == 0:
            p2.append(jnp.broadcast_to(p, (1, block)))
            p_kinds.append("shared")
        else:
            p2.append(jnp.broadcast_to(p, S).reshape(1, N))
            p_kinds.append("row")
        p_dtypes.append(pd)
    ops = Operands(x_dtypes=tuple(x.dtype for x in x_leaves),
                   s_dtypes=tuple(s.dtype for s in s_leaves), s_kinds=s_kinds,
                   p_dtypes=tuple(p_dtypes), p_kinds=tuple(p_kinds), out_dtype=out_dtype,
                   compute_dtype=cdt)
    fused, out_def = _build(step, (s_def, x_def, p_def), Geometry(T, Np, block), ops,
                            return_state_seq, dataclasses.replace(cfg, block_n=block))
    outs, states = fused(xs2, s2, p2)
    def crop(a):
        return a if Np == N else a[:, :N]
    outs = [crop(o).reshape((T,) + S) for o in outs]
    if return_state_seq:
        states = [crop(s).reshape((T,) + S) for s in states]
    else:
        states = [crop(s)[0].reshape(S) for s in states]
    return (jax.tree_util.tree_unflatten(s_def, states),
            jax.tree_util.tree_unflatten(out_def, outs))


_warned: set = set()


def check_step(step: Callable, state0: Any, xs: Any, params: Any, config: Config) -> None:
    """Raise ``KernelLoweringError`` if ``step`` cannot become a kernel for these operands."""
    step, params = bind_constants(step, params)   # as pallas_multi_step will
    s_def = jax.tree_util.tree_structure(state0)
    x_leaves, x_def = jax.tree_util.tree_flatten(xs)
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    dts = [jnp.asarray(a).dtype for a in x_leaves + p_leaves + jax.tree_util.tree_leaves(state0)]
    cdt = jnp.dtype(jnp.float64) if any(d == jnp.float64 for d in dts) else jnp.dtype(jnp.float32)
    if not backend_available(config.backend):
        from snnjax.kernels.jaxpr_tools import KernelLoweringError
        raise KernelLoweringError(f"the installed JAX has no {config.backend} lowering")
    if cdt == jnp.float64 and config.backend == "mosaic" and not config.interpret:
        from snnjax.kernels.jaxpr_tools import KernelLoweringError
        raise KernelLoweringError("the Mosaic GPU backend builds no float64 kernels")
    block = config.block_n or 128
    _plan(step, (s_def, x_def, p_def), cdt, Lowering.of(config, block))


def warn_once(step: Callable, err: Exception, to: str = "lax.scan") -> None:
    """Warn once per step (and fallback target) that its kernels could not be built."""
    key = (id(step), to)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"snnjax.kernels: falling back to {to}: {err}", stacklevel=3)
