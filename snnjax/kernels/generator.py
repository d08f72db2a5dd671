"""Backend-neutral kernel generator: step function -> time-loop kernels under ``jax.custom_vjp``.

Pipeline (per step function, pytree structure, compute dtype and block size; cached):

1. ``joint(state, x, params, g_state, g_out) -> (new_state, out, g_prev, g_x, g_params)`` is
   traced with ``jax.vjp`` of the step on rows ``(1, block_n)``, then flattened by
   ``jaxpr_tools.inline_eval`` (surrogate ``custom_vjp`` rules are already applied by ``vjp``)
   and checked to be elementwise.
2. Its equations split into the primal part (no cotangent input) and the cotangent part. The
   training forward saves a minimum-cost set of primal values that separates (state, x) from
   everything the cotangent part reads (``min_vertex_cut``): for LIF that is one row per step
   (``h``), and the backward never re-reads ``x`` or the previous state. Inputs and outputs that
   are already in memory at compute precision are re-read instead of saved (half the cost).
3. Three ``LoopSpec``s (inference forward, training forward, reverse backward) describe the
   kernels independently of the Pallas backend; a backend module (``pallas_triton``) lowers them.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from snnjax.kernels.jaxpr_tools import (KernelLoweringError, check_elementwise, eval_eqns,
                                        flatten_jaxpr, min_vertex_cut, needed_eqns)

Rows = list  # list of per-neuron rows, each ``(1, block_n)``


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """One time-loop kernel, independent of the backend.

    Operands: ``seq_in`` arrays ``[T, Np]`` (read one row per step), ``row_in`` arrays ``[1, Np]``
    (kind ``'row'``) or ``[1, block_n]`` shared by all programs (kind ``'shared'``). Results:
    ``seq_out`` ``[T, Np]`` (one row written per step) and ``row_out`` ``[1, Np]`` (``'row'``)
    or ``[Np // block_n, block_n]`` (``'block'``: one row per program, summed by the caller).
    Every loaded row is cast to ``compute_dtype``; stores cast to the declared dtypes.
    """
    row_in_kinds: tuple[str, ...]
    seq_out_dtypes: tuple[Any, ...]
    row_out: tuple[tuple[Any, str], ...]
    init: Callable[[Rows], Rows]                               # rows -> carry
    body: Callable[[Rows, Rows, Rows], tuple[Rows, Rows]]     # rows, carry, seq rows -> carry, outs
    final: Callable[[Rows, Rows], Rows]                        # rows, carry -> row outs
    reverse: bool
    compute_dtype: Any


@dataclasses.dataclass
class StepPlan:
    """The traced, checked and partitioned step (see module docstring)."""
    n_s: int
    n_x: int
    n_p: int
    n_o: int
    out_def: Any
    jaxpr: Any            # flat joint jaxpr
    consts: dict
    infer_eqns: list
    train_eqns: list
    bwd_eqns: list
    residuals: list       # [(var, ('save', k) | ('x', i) | ('out', i) | ('state', i))]
    n_saved: int
    row_shape: tuple[int, int]
    compute_dtype: Any
    need: tuple[bool, ...]  # which input cotangents (states, xs, params) the backward makes


def _flat_step(step: Callable, defs: tuple, n_s: int, n_x: int, cdt: Any, out_box: list):
    state_def, x_def, p_def = defs

    def fstep(*flat):
        s = jax.tree_util.tree_unflatten(state_def, flat[:n_s])
        x = jax.tree_util.tree_unflatten(x_def, flat[n_s:n_s + n_x])
        p = jax.tree_util.tree_unflatten(p_def, flat[n_s + n_x:])
        new_s, out = step(s, x, p)
        new_leaves, new_def = jax.tree_util.tree_flatten(new_s)
        if new_def != state_def:
            raise KernelLoweringError(f"step returned a state with structure {new_def}, "
                                      f"expected {state_def}")
        out_leaves, out_def = jax.tree_util.tree_flatten(out)
        out_box[:] = [out_def]
        res = []
        for leaf in new_leaves + out_leaves:
            leaf = jnp.asarray(leaf)
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise KernelLoweringError(f"step outputs/states must be floating, got {leaf.dtype}")
            res.append(leaf.astype(cdt))
        return res
    return fstep


def make_plan(step: Callable, defs: tuple, cdt: Any, block_n: int, reread_out: tuple[bool, ...],
              reread_state: tuple[bool, ...], supported: frozenset[str] | None,
              need: tuple[bool, ...] | None = None) -> StepPlan:
    """Trace, check and partition ``step`` for rows ``(1, block_n)`` of dtype ``cdt``.

    ``need``: per flat input (states, xs, params) whether its gradient is wanted (None: all);
    gradients nobody asked for are neither computed nor paid for in saved rows.

    ``reread_out[i]`` / ``reread_state[i]``: output ``i`` / state sequence ``i`` is stored at
    compute precision, so the backward may read it back instead of a saved copy.
    Raises ``KernelLoweringError`` if the step cannot become a kernel.
    """
    state_def, x_def, p_def = defs
    n_s, n_x, n_p = state_def.num_leaves, x_def.num_leaves, p_def.num_leaves
    row = jax.ShapeDtypeStruct((1, block_n), cdt)
    box: list = []
    fstep = _flat_step(step, defs, n_s, n_x, cdt, box)
    try:
        shapes = jax.eval_shape(fstep, *([row] * (n_s + n_x + n_p)))
    except KernelLoweringError:
        raise
    except Exception as e:  # e.g. value-dependent Python control flow
        raise KernelLoweringError(
            f"step could not be traced on per-neuron rows ({e}); a step for kernels must be "
            "elementwise, capture no arrays (pass them as a param) and use no value-dependent "
            "Python control flow; or use backend='scan'") from e
    for sh in shapes:
        if tuple(sh.shape) != (1, block_n):
            raise KernelLoweringError(f"step produced a value of shape {sh.shape} from rows of "
                                      f"shape {(1, block_n)}; it must be elementwise")
    n_o = len(shapes) - n_s
    out_def = box[0]

    def joint(*a):
        prim = a[:n_s + n_x + n_p]
        cts = list(a[n_s + n_x + n_p:])
        outs, vjp_fn = jax.vjp(fstep, *prim)
        return list(outs) + list(vjp_fn(cts))

    try:
        closed = flatten_jaxpr(joint, [row] * (n_s + n_x + n_p + n_s + n_o))
    except KernelLoweringError:
        raise
    except Exception as e:
        raise KernelLoweringError(f"step could not be differentiated on rows: {e}") from e
    check_elementwise(closed, (1, block_n), supported)
    jx = closed.jaxpr
    consts = dict(zip(jx.constvars, [np.asarray(c) for c in closed.consts]))
    ins = jx.invars
    S, X = ins[:n_s], ins[n_s:n_s + n_x]
    P = ins[n_s + n_x:n_s + n_x + n_p]
    G = ins[n_s + n_x + n_p:]
    outs = jx.outvars
    NS, O, CT_all = outs[:n_s], outs[n_s:n_s + n_o], outs[n_s + n_o:]
    need = tuple(need) if need is not None else (True,) * len(CT_all)
    # state cotangents carry the reverse recurrence: always computed
    CT = [v for v, n in zip(CT_all, (True,) * n_s + need[n_s:]) if n]
    live = needed_eqns(jx, list(NS) + list(O) + CT, list(ins) + list(jx.constvars))

    # Split: an equation is on the cotangent side if any input depends on a cotangent.
    ct_dep = set(G)
    primal, sinks = [], []
    for eqn in live:
        vs = [v for v in eqn.invars if not isinstance(v, jcore.Literal)]
        if any(v in ct_dep for v in vs):
            ct_dep.update(eqn.outvars)
            sinks.extend(v for v in vs if v not in ct_dep)
        else:
            primal.append(eqn)
    sinks.extend(v for v in CT if not isinstance(v, jcore.Literal) and v not in ct_dep)

    def storable(v: Any) -> bool:
        return v.aval.shape == (1, block_n) and (
            jnp.issubdtype(v.aval.dtype, jnp.floating) or v.aval.dtype == jnp.bool_)

    # Values already in memory at compute precision: re-read (cost 1) instead of saved (2).
    reread: dict = {}
    for i, v in enumerate(X):
        reread.setdefault(v, ("x", i))
    for i, v in enumerate(O):
        if i < len(reread_out) and reread_out[i] and not isinstance(v, jcore.Literal):
            reread.setdefault(v, ("out", i))
    for i, v in enumerate(NS):
        if i < len(reread_state) and reread_state[i] and not isinstance(v, jcore.Literal):
            reread.setdefault(v, ("state", i))
    cost: dict = {}
    for eqn in primal:
        for v in eqn.outvars:
            if storable(v):
                cost[v] = 2  # written by the forward, read by the backward
    for v in S:
        cost[v] = 2
    for v in reread:
        cost[v] = 1
    cut = min_vertex_cut(jx, list(S) + list(X), sinks, cost, primal)

    residuals, n_saved = [], 0
    for v in cut:
        src = reread.get(v)
        if src is None:
            src = ("save", n_saved)
            n_saved += 1
        residuals.append((v, src))

    known_fwd = list(S) + list(X) + list(P) + list(consts)
    infer_eqns = needed_eqns(jx, list(NS) + list(O), known_fwd)
    train_eqns = needed_eqns(jx, list(NS) + list(O) + [v for v, _ in residuals], known_fwd)
    bwd_eqns = needed_eqns(jx, CT, list(P) + list(G) + cut + list(consts))
    return StepPlan(n_s, n_x, n_p, n_o, out_def, jx, consts, infer_eqns, train_eqns, bwd_eqns,
                    residuals, n_saved, (1, block_n), cdt, need)


def _reader(env: dict, shape: tuple, cdt: Any) -> Callable[[Any], Any]:
    def read(v: Any) -> Any:
        val = v.val if isinstance(v, jcore.Literal) else env[v]
        if getattr(val, "shape", ()) != shape:
            val = jnp.broadcast_to(jnp.asarray(val, cdt), shape)
        return val
    return read


def forward_spec(plan: StepPlan, *, training: bool, return_state_seq: bool, out_dtypes: Sequence,
                 state_dtypes: Sequence, p_kinds: Sequence[str],
                 s_kinds: Sequence[str] | None = None) -> LoopSpec:
    """Forward loop. seq_in: xs. row_in: state0, params.
    seq_out: outs, [state seq], [saved residuals if training]. row_out: [final state]."""
    jx, cdt, n_s = plan.jaxpr, plan.compute_dtype, plan.n_s
    ins = jx.invars
    S, X = ins[:n_s], ins[n_s:n_s + plan.n_x]
    P = ins[n_s + plan.n_x:n_s + plan.n_x + plan.n_p]
    NS, O = jx.outvars[:n_s], jx.outvars[n_s:n_s + plan.n_o]
    eqns = plan.train_eqns if training else plan.infer_eqns
    saved = [v for v, src in plan.residuals if src[0] == "save"] if training else []

    def body(rows, carry, seq):
        env = dict(plan.consts)
        env.update(zip(S, carry))
        env.update(zip(X, seq))
        env.update(zip(P, rows[n_s:]))
        eval_eqns(eqns, env)
        read = _reader(env, plan.row_shape, cdt)
        new = [read(v) for v in NS]
        outs = [read(v) for v in O]
        if return_state_seq:
            outs += new
        outs += [read(v).astype(cdt) for v in saved]
        return new, outs

    seq_out = tuple(out_dtypes) + (tuple(state_dtypes) if return_state_seq else ()) \
        + (cdt,) * len(saved)
    row_out = () if return_state_seq else tuple((d, "row") for d in state_dtypes)
    s_kinds = tuple(s_kinds) if s_kinds is not None else ("row",) * n_s
    return LoopSpec(row_in_kinds=s_kinds + tuple(p_kinds), seq_out_dtypes=seq_out,
                    row_out=row_out, init=lambda rows: list(rows[:n_s]), body=body,
                    final=(lambda rows, c: []) if return_state_seq else (lambda rows, c: list(c)),
                    reverse=False, compute_dtype=cdt)


def backward_spec(plan: StepPlan, *, return_state_seq: bool, x_dtypes: Sequence,
                  state_dtypes: Sequence, p_kinds: Sequence[str], p_dtypes: Sequence,
                  g_out_present: Sequence[bool], g_state_present: Sequence[bool],
                  s_kinds: Sequence[str] | None = None) -> LoopSpec:
    """Reverse loop. seq_in: residual rows (one per ``plan.residuals`` entry), the present
    g_outs, [the present g_state_seqs]. row_in: params, [the present g_final_states].
    seq_out: g_xs (needed ones). row_out: g_state0s, g_params (needed ones).
    Absent (symbolic-zero) cotangents are zeros in registers, not read from memory."""
    jx, cdt, n_s, n_x, n_p, n_o = (plan.jaxpr, plan.compute_dtype, plan.n_s, plan.n_x, plan.n_p,
                                   plan.n_o)
    P = jx.invars[n_s + n_x:n_s + n_x + n_p]
    GS = jx.invars[n_s + n_x + n_p:n_s + n_x + n_p + n_s]
    GO = jx.invars[n_s + n_x + n_p + n_s:]
    need = plan.need
    CT = [v for v, n in zip(jx.outvars[n_s + n_o:], (True,) * n_s + need[n_s:]) if n]
    need_s, need_x, need_p = need[:n_s], need[n_s:n_s + n_x], need[n_s + n_x:]
    n_r = len(plan.residuals)
    n_go = sum(g_out_present)
    shape = plan.row_shape

    def fill(present, given):
        it = iter(given)
        return [next(it) if p else jnp.zeros(shape, cdt) for p in present]

    def init(rows):
        g_state = [jnp.zeros(shape, cdt) for _ in range(n_s)] if return_state_seq \
            else fill(g_state_present, rows[n_p:])
        return g_state + [jnp.zeros(shape, cdt) for _ in range(sum(need_p))]

    def body(rows, carry, seq):
        g_state = carry[:n_s]
        if return_state_seq:
            g_state = [g + s if p else g for g, s, p in
                       zip(g_state, fill(g_state_present, seq[n_r + n_go:]), g_state_present)]
        env = dict(plan.consts)
        env.update(zip(P, rows[:n_p]))
        env.update(zip(GS, g_state))
        env.update(zip(GO, fill(g_out_present, seq[n_r:n_r + n_go])))
        for (v, _), r in zip(plan.residuals, seq[:n_r]):
            env[v] = (r != 0) if v.aval.dtype == jnp.bool_ else r
        eval_eqns(plan.bwd_eqns, env)
        read = _reader(env, shape, cdt)
        ct = iter([read(v) for v in CT])
        g_prev = [next(ct) for _ in range(n_s)]
        g_x = [next(ct) for n in need_x if n]
        acc = [a + next(ct) for a in carry[n_s:]]
        return g_prev + acc, g_x

    def final(rows, carry):
        return [c for c, n in zip(carry[:n_s], need_s) if n] + list(carry[n_s:])

    s_kinds = tuple(s_kinds) if s_kinds is not None else ("row",) * n_s
    row_out = tuple((d, "block" if k == "shared" else "row")
                    for d, k, n in zip(state_dtypes, s_kinds, need_s) if n) + tuple(
        (d, "block" if k == "shared" else "row")
        for d, k, n in zip(p_dtypes, p_kinds, need_p) if n)
    row_in = tuple(p_kinds) + (() if return_state_seq else ("row",) * sum(g_state_present))
    return LoopSpec(row_in_kinds=row_in,
                    seq_out_dtypes=tuple(d for d, n in zip(x_dtypes, need_x) if n),
                    row_out=row_out, init=init, body=body, final=final, reverse=True,
                    compute_dtype=cdt)


# ----------------------------------------------------------------------------- host side


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def default_block(n: int, interpret: bool) -> int:
    """Largest power of two <= 1024 that still gives >= 4 programs per SM of a 132-SM GPU
    (floor 128); for tiny ``n`` the next power of two (>= 16). Interpret mode: one or few blocks."""
    if interpret:
        return min(max(16, _next_pow2(n)), 4096)
    b = 1024
    while b > 128 and -(-n // b) < 4 * 132:
        b //= 2
    return min(b, max(16, _next_pow2(n)))


@dataclasses.dataclass(frozen=True)
class Config:
    """Static kernel configuration (hashable; part of the cache key)."""
    backend: str = "triton"
    block_n: int | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    prefetch: bool = True   # load step t+1's rows before step t's math (hides load latency)
    interpret: bool = False


def _backend_module(name: str) -> Any:
    if name == "triton":
        from snnjax.kernels import pallas_triton
        return pallas_triton
    raise ValueError(f"unknown kernel backend {name!r}")


def supported_primitives(cfg: Config) -> frozenset[str] | None:
    """Primitive names the configured backend lowers (None: everything elementwise)."""
    if cfg.interpret:
        return None
    return _backend_module(cfg.backend).supported_primitives()


@functools.lru_cache(maxsize=512)
def _cached_plan(step, defs, cdt, block_n, reread_out, reread_state, supported,
                 need=None) -> StepPlan:
    return make_plan(step, defs, cdt, block_n, reread_out, reread_state, supported, need)


@functools.lru_cache(maxsize=512)
def _build(step: Callable, defs: tuple, T: int, Np: int, block_n: int, x_dtypes: tuple,
           s_dtypes: tuple, s_kinds: tuple, out_dtype: Any, p_kinds: tuple, p_dtypes: tuple,
           cdt: Any,
           return_state_seq: bool, cfg: Config) -> tuple[Callable, Any]:
    """The ``custom_vjp`` fused function on padded ``[T, Np]`` / ``[1, Np]`` operands."""
    n_s = defs[0].num_leaves
    n_o_probe = _cached_plan(step, defs, cdt, block_n, (False,) * 64, (False,) * n_s,
                             supported_primitives(cfg)).n_o
    out_dtypes = (out_dtype,) * n_o_probe
    reread_out = tuple(np.dtype(d) == np.dtype(cdt) for d in out_dtypes)
    reread_state = tuple(return_state_seq and np.dtype(d) == np.dtype(cdt) for d in s_dtypes)
    sup = supported_primitives(cfg)
    plan = _cached_plan(step, defs, cdt, block_n, reread_out, reread_state, sup)
    backend = _backend_module(cfg.backend)
    run = functools.partial(backend.run_loop, T=T, Np=Np, block_n=block_n, cfg=cfg)
    n_x, n_o = plan.n_x, plan.n_o
    spec_kw = dict(return_state_seq=return_state_seq, out_dtypes=out_dtypes,
                   state_dtypes=s_dtypes, p_kinds=p_kinds, s_kinds=s_kinds)
    f_inf = forward_spec(plan, training=False, **spec_kw)

    def split(seq_out, row_out):
        outs = list(seq_out[:n_o])
        states = list(seq_out[n_o:n_o + n_s]) if return_state_seq else list(row_out)
        return outs, states

    @jax.custom_vjp
    def fused(xs, s0, ps):
        seq_out, row_out = run(f_inf, list(xs), list(s0) + list(ps))
        return split(seq_out, row_out)

    def fused_fwd(xs, s0, ps):
        # symbolic_zeros: leaves carry ``perturbed``; gradients nobody needs are not planned for
        need = tuple(bool(a.perturbed) for a in list(s0) + list(xs) + list(ps))
        xs, s0, ps = ([a.value for a in group] for group in (xs, s0, ps))
        tplan = _cached_plan(step, defs, cdt, block_n, reread_out, reread_state, sup, need)
        seq_out, row_out = run(forward_spec(tplan, training=True, **spec_kw), list(xs),
                               list(s0) + list(ps))
        outs, states = split(seq_out, row_out)
        saved = list(seq_out[n_o + (n_s if return_state_seq else 0):])
        res_arrays = []
        for _, (kind, i) in tplan.residuals:
            res_arrays.append({"save": saved, "x": xs, "out": outs, "state": states}[kind][i])
        # the need flags travel as the (static) dict key of the residual pytree
        return (outs, states), {need: (res_arrays, list(ps))}

    def fused_bwd(res, cts):
        ((need, (res_arrays, ps)),) = res.items()
        tplan = _cached_plan(step, defs, cdt, block_n, reread_out, reread_state, sup, need)
        g_outs, g_states = cts
        zero = jax.custom_derivatives.SymbolicZero
        go_present = [not isinstance(g, zero) for g in g_outs]
        gs_present = [not isinstance(g, zero) for g in g_states]
        spec = backward_spec(tplan, return_state_seq=return_state_seq, x_dtypes=x_dtypes,
                             state_dtypes=s_dtypes, p_kinds=p_kinds, p_dtypes=p_dtypes,
                             s_kinds=s_kinds,
                             g_out_present=go_present, g_state_present=gs_present)
        g_o = [g for g, p in zip(g_outs, go_present) if p]
        g_s = [g for g, p in zip(g_states, gs_present) if p]
        seq_in = list(res_arrays) + g_o + (g_s if return_state_seq else [])
        row_in = list(ps) + ([] if return_state_seq else g_s)
        if not any(need):
            return [None] * n_x, [None] * n_s, [None] * len(ps)
        g_xs, row_out = run(spec, seq_in, row_in)
        g_xs, row_out = iter(g_xs), iter(row_out)
        need_s, need_x, need_p = need[:n_s], need[n_s:n_s + n_x], need[n_s + n_x:]
        g_s0 = [next(row_out) if n else None for n in need_s]
        g_s0 = [jnp.sum(g, axis=0, keepdims=True) if (g is not None and k == "shared") else g
                for g, k in zip(g_s0, s_kinds)]
        g_ps = []
        for k, n in zip(p_kinds, need_p):
            g = next(row_out) if n else None
            g_ps.append(jnp.sum(g, axis=0, keepdims=True) if (n and k == "shared") else g)
        return [next(g_xs) if n else None for n in need_x], g_s0, g_ps

    fused.defvjp(fused_fwd, fused_bwd, symbolic_zeros=True)
    return fused, plan.out_def


def _float_dtype(d: Any) -> Any:
    return d if jnp.issubdtype(d, jnp.floating) else jnp.result_type(float)


def pallas_multi_step(step: Callable, state0: Any, xs: Any, params: Any = (), *,
                      return_state_seq: bool = False, config: Config = Config()) -> tuple[Any, Any]:
    """Fused-kernel version of ``scan_multi_step`` (same arguments and results).

    ``xs`` leaves ``[T, *S]``; ``state0`` leaves ``S`` (or broadcastable to it; a scalar is
    read as one shared row instead of an ``[N]`` array); ``params``
    leaves scalars (shared by all neurons) or broadcastable to ``S`` (per neuron). Outputs have
    the dtype of ``xs``; states keep the dtype of ``state0``; arithmetic is float32 (float64
    when an operand is float64). Raises ``KernelLoweringError`` for a step that is not
    elementwise.
    """
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
    cfg = config
    block = cfg.block_n or default_block(N, cfg.interpret)
    Np = -(-N // block) * block

    if T == 0:  # nothing to run: let scan define the (empty) result
        from snnjax.kernels.scan import scan_multi_step
        return scan_multi_step(step, state0, xs, params, return_state_seq=return_state_seq)

    def pad_row(a):  # [1, N] -> [1, Np], edge-replicated lanes carry no gradient
        if Np == N:
            return a
        edge = jax.lax.stop_gradient(jnp.broadcast_to(a[:, -1:], (1, Np - N)))
        return jnp.concatenate([a, edge], axis=1)

    xs2 = [jnp.pad(x.reshape(T, N), ((0, 0), (0, Np - N))) for x in x_leaves]
    s2 = [jnp.broadcast_to(s, (1, block)) if k == "shared"
          else pad_row(jnp.broadcast_to(s, S).reshape(1, N)) for s, k in zip(s_leaves, s_kinds)]
    p2, p_kinds, p_dtypes = [], [], []
    for p in p_leaves:
        pd = jnp.dtype(cdt) if not jnp.issubdtype(p.dtype, jnp.floating) else \
            jnp.promote_types(p.dtype, jnp.float32)
        p = p.astype(pd)
        if p.ndim == 0:
            p2.append(jnp.broadcast_to(p, (1, block)))
            p_kinds.append("shared")
        else:
            p2.append(pad_row(jnp.broadcast_to(p, S).reshape(1, N)))
            p_kinds.append("row")
        p_dtypes.append(pd)
    fused, out_def = _build(step, (s_def, x_def, p_def), T, Np, block,
                            tuple(x.dtype for x in x_leaves), tuple(s.dtype for s in s_leaves),
                            s_kinds, out_dtype, tuple(p_kinds), tuple(p_dtypes), cdt, return_state_seq,
                            dataclasses.replace(cfg, block_n=block))
    outs, states = fused(xs2, s2, p2)
    outs = [o[:, :N].reshape((T,) + S) for o in outs]
    if return_state_seq:
        states = [s[:, :N].reshape((T,) + S) for s in states]
    else:
        states = [s[0, :N].reshape(S) for s in states]
    return (jax.tree_util.tree_unflatten(s_def, states),
            jax.tree_util.tree_unflatten(out_def, outs))


_warned: set = set()


def check_step(step: Callable, state0: Any, xs: Any, params: Any, config: Config) -> None:
    """Raise ``KernelLoweringError`` if ``step`` cannot become a kernel for these operands."""
    s_def = jax.tree_util.tree_structure(state0)
    x_leaves, x_def = jax.tree_util.tree_flatten(xs)
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    dts = [jnp.asarray(a).dtype for a in x_leaves + p_leaves + jax.tree_util.tree_leaves(state0)]
    cdt = jnp.dtype(jnp.float64) if any(d == jnp.float64 for d in dts) else jnp.dtype(jnp.float32)
    block = config.block_n or 128
    _cached_plan(step, (s_def, x_def, p_def), cdt, block, (False,) * 64,
                 (False,) * s_def.num_leaves, supported_primitives(config))


def warn_once(step: Callable, err: Exception) -> None:
    key = id(step)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"snnjax.kernels: falling back to lax.scan: {err}", stacklevel=3)
