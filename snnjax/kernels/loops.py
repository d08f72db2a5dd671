"""Backend-neutral descriptions of the three time-loop kernels (``LoopSpec``).

A kernel runs one program per ``block_n`` neurons; inside it the time axis is cut into chunks
of ``chunk_len`` steps (``chunk_layout``). Each chunk is one call of ``LoopSpec.chunk``, which
first loads every row the chunk reads (so the loads are in flight together), then runs its steps
unrolled. The chunks are visited by a real loop, so the program size depends on ``chunk_len``,
not on ``T``. A backend (``pallas_triton``, ``pallas_mosaic``) lowers a ``LoopSpec`` to a kernel; it provides the
row I/O object ``io`` with ``io.load(i, index)`` (row ``index`` of sequence input ``i``, cast to
the compute dtype) and ``io.store(j, index, value)`` (row ``index`` of sequence output ``j``).

Kernels built here, from a ``StepPlan`` (``plan.py``):

* ``forward_spec(training=False)``: inference forward: outputs (and the final state or the state
  sequence); nothing for a backward.
* ``forward_spec(training=True)``: additionally the residuals of the chosen mode: saved rows
  every step (``'save'``) or the state at every chunk start (``'recompute'``).
* ``backward_spec``: the reverse loop: per chunk (visited last to first) either read the saved
  rows, or re-run the chunk's forward from its checkpoint keeping the residuals in registers;
  then the chunk's steps in reverse order.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax.numpy as jnp
from jax.extend import core as jcore

from snnjax.kernels.jaxpr_tools import eval_eqns
from snnjax.kernels.plan import Residuals, StepPlan

Rows = list  # list of per-neuron rows, each ``(1, block_n)``


@dataclasses.dataclass(frozen=True)
class Config:
    """Static kernel configuration (hashable; part of the cache key).

    ``backend``: the Pallas lowering, ``'triton'`` or ``'mosaic'`` (``multi_step`` sets it from
    its ``backend`` argument); ``block_n``: neurons per program (Mosaic: a power of two >= 128);
    ``num_warps`` / ``num_stages``: Triton only (a Mosaic program is one warpgroup);
    ``chunk``: time steps per unrolled chunk (and checkpoint interval of ``'recompute'``;
    ``None``: ``generator.default_chunk``, 8 or 4 from the step's register need);
    ``residuals``: ``'auto'`` (fewer bytes), ``'save'`` or ``'recompute'`` (``plan.py``);
    ``alias_cotangent``: the Triton backward writes the input gradient into the buffer of the
    incoming spike cotangent (one ``[T, N]`` buffer fewer in a training step where that
    cotangent is computed by the step, e.g. by the next layer's backward; where it is an
    argument of the jitted function, XLA copies it first, which costs a pass over it).

    Args:
      backend: ``'triton'`` or ``'mosaic'`` (default ``'triton'``).
      block_n: neurons per program, a power of two (Mosaic: ``>= 128``) or ``None`` for the
        backend's default (default ``None``).
      num_warps: Triton warps per program, a power of two or ``None`` (default ``None``).
      num_stages: Triton software-pipelining stages, a positive int or ``None`` (default
        ``None``).
      chunk: time steps per unrolled chunk, a positive int, or ``None`` for 8 (4 for a step
        whose backward keeps several values per step; default ``None``).
      residuals: ``'auto'``, ``'save'`` or ``'recompute'`` (default ``'auto'``).
      interpret: ``True``: run the kernels in Pallas' interpret mode (default ``False``;
        :func:`current_config` sets it when there is no GPU).
      alias_cotangent: a bool (default ``False``: a memory option that can cost time).
    """
    backend: str = "triton"
    block_n: int | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    chunk: int | None = None
    residuals: str = "auto"
    interpret: bool = False
    alias_cotangent: bool = False


def chunk_layout(T: int, chunk_len: int) -> tuple[int, int, int]:
    """``(r, n_full, n_chunks)``: the first chunk holds ``r = T % chunk_len`` steps (if
    ``r > 0``), followed by ``n_full`` chunks of ``chunk_len`` steps."""
    r = T % chunk_len
    n_full = T // chunk_len
    return r, n_full, n_full + (1 if r else 0)


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """One time-loop kernel, independent of the backend.

    Operands: sequence inputs ``[L, Np]`` with ``L = T`` (``seq_in_per_step``) or the number of
    chunks (one row per chunk: checkpoints); row inputs ``[1, Np]`` (kind ``'row'``) or
    ``[1, block_n]`` shared by all programs (``'shared'``). Results: sequence outputs
    ``(dtype, per_step)`` likewise; row outputs ``[1, Np]`` (``'row'``) or
    ``[Np // block_n, block_n]`` (``'block'``: one row per program, summed by the caller).
    ``chunk(rows, carry, io, t0, c, n)`` runs the ``n`` (static) steps ``t0 .. t0 + n - 1`` of
    chunk ``c`` (``t0``, ``c`` traced) and returns the new carry. ``reverse``: chunks are
    visited last to first. ``aliases``: ``(i, j)`` pairs of a per-step sequence input and
    output that may share one buffer (each program reads its rows of input ``i`` at step ``t``
    before it writes the same rows of output ``j``): the backward's output cotangent and the
    input gradient, so a training step holds one ``[T, N]`` buffer fewer.
    """
    seq_in_per_step: tuple[bool, ...]
    row_in_kinds: tuple[str, ...]
    seq_out: tuple[tuple[Any, bool], ...]
    row_out: tuple[tuple[Any, str], ...]
    init: Callable[[Rows], Rows]
    chunk: Callable[..., Rows]
    final: Callable[[Rows, Rows], Rows]
    reverse: bool
    compute_dtype: Any
    chunk_len: int
    aliases: tuple[tuple[int, int], ...] = ()


def _reader(env: dict, shape: tuple, cdt: Any) -> Callable[[Any], Any]:
    def read(v: Any) -> Any:
        val = v.val if isinstance(v, jcore.Literal) else env[v]
        if getattr(val, "shape", ()) != shape:
            val = jnp.broadcast_to(jnp.asarray(val, cdt), shape)
        return val
    return read


def _constants(plan: StepPlan) -> dict:
    """The step's constants as uniform rows (a broadcast literal, which every lowering has)."""
    return {v: jnp.full(plan.row_shape, c, dtype) for v, (c, dtype) in plan.consts.items()}


def _primal(plan: StepPlan, eqns: Sequence, consts: dict, rows: Rows, state: Rows,
            x: Rows) -> Callable:
    """Evaluate primal ``eqns`` of one step; returns a reader of the step's values."""
    n_s, n_x, n_p = plan.n_s, plan.n_x, plan.n_p
    ins = plan.jaxpr.invars
    env = dict(consts)
    env.update(zip(ins[:n_s], state))
    env.update(zip(ins[n_s:n_s + n_x], x))
    env.update(zip(ins[n_s + n_x:n_s + n_x + n_p], rows[:n_p]))
    eval_eqns(eqns, env)
    return _reader(env, plan.row_shape, plan.compute_dtype)


def forward_spec(plan: StepPlan, *, training: bool, residuals: Residuals, chunk_len: int,
                 return_state_seq: bool, out_dtypes: Sequence, state_dtypes: Sequence,
                 p_kinds: Sequence[str], s_kinds: Sequence[str]) -> LoopSpec:
    """Forward loop. seq_in: xs. row_in: params, state0.
    seq_out: outs, [state seq], then if training: saved rows (``'save'``) or checkpoints
    (``'recompute'``). row_out: [final state]."""
    cdt, n_s, n_x, n_p = plan.compute_dtype, plan.n_s, plan.n_x, plan.n_p
    NS, O = plan.jaxpr.outvars[:n_s], plan.jaxpr.outvars[n_s:n_s + plan.n_o]
    eqns = residuals.fwd_eqns if training else plan.infer_eqns
    save = training and residuals.mode == "save"
    ckpt = training and residuals.mode == "recompute"
    saved = [v for v, src in residuals.cut if src[0] == "save"] if save else []
    n_sout = plan.n_o + (n_s if return_state_seq else 0) + len(saved)

    def chunk(rows, carry, io, t0, c, n):
        if ckpt:
            for i, v in enumerate(carry):
                io.store(n_sout + i, c, v)
        xs = [[io.load(j, t0 + k) for j in range(n_x)] for k in range(n)]
        consts = _constants(plan)
        for k in range(n):
            read = _primal(plan, eqns, consts, rows, carry, xs[k])
            carry = [read(v) for v in NS]
            outs = [read(v) for v in O] + (carry if return_state_seq else []) \
                + [read(v).astype(cdt) for v in saved]
            for j, o in enumerate(outs):
                io.store(j, t0 + k, o)
        return carry

    seq_out = tuple((d, True) for d in out_dtypes) \
        + (tuple((d, True) for d in state_dtypes) if return_state_seq else ()) \
        + ((cdt, True),) * len(saved) + (((cdt, False),) * n_s if ckpt else ())
    return LoopSpec(
        seq_in_per_step=(True,) * n_x, row_in_kinds=tuple(p_kinds) + tuple(s_kinds),
        seq_out=seq_out,
        row_out=() if return_state_seq else tuple((d, "row") for d in state_dtypes),
        init=lambda rows: list(rows[n_p:n_p + n_s]), chunk=chunk,
        final=(lambda rows, c: []) if return_state_seq else (lambda rows, c: list(c)),
        reverse=False, compute_dtype=cdt, chunk_len=chunk_len)


def backward_spec(plan: StepPlan, *, residuals: Residuals, chunk_len: int,
                  return_state_seq: bool, x_dtypes: Sequence, state_dtypes: Sequence,
                  p_kinds: Sequence[str], p_dtypes: Sequence, g_out_present: Sequence[bool],
                  g_state_present: Sequence[bool], s_kinds: Sequence[str]) -> LoopSpec:
    """Reverse loop.

    seq_in: ``'save'``: one row per residual (saved or read back); ``'recompute'``: the
    checkpoints (one row per chunk and state) and the xs. Then the present g_outs and
    [the present g_state_seqs]. row_in: params, [the present g_final_states].
    seq_out: g_xs (needed ones). row_out: g_state0s, g_params (needed ones).
    Absent (symbolic-zero) cotangents are zeros in registers, not read from memory.
    """
    jx, cdt, n_s, n_x, n_p, n_o = (plan.jaxpr, plan.compute_dtype, plan.n_s, plan.n_x, plan.n_p,
                                   plan.n_o)
    P = jx.invars[n_s + n_x:n_s + n_x + n_p]
    GS = jx.invars[n_s + n_x + n_p:n_s + n_x + n_p + n_s]
    GO = jx.invars[n_s + n_x + n_p + n_s:]
    NS = jx.outvars[:n_s]
    need = plan.need
    CT = [v for v, n in zip(jx.outvars[n_s + n_o:], (True,) * n_s + need[n_s:]) if n]
    need_s, need_x, need_p = need[:n_s], need[n_s:n_s + n_x], need[n_s + n_x:]
    recompute = residuals.mode == "recompute"
    cut = [v for v, _ in residuals.cut]
    n_res_in = n_s + n_x if recompute else len(cut)
    n_go, n_gs = sum(g_out_present), (sum(g_state_present) if return_state_seq else 0)
    shape = plan.row_shape

    def fill(present, given):
        it = iter(given)
        return [next(it) if p else jnp.zeros(shape, cdt) for p in present]

    def init(rows):
        g_state = [jnp.zeros(shape, cdt) for _ in range(n_s)] if return_state_seq \
            else fill(g_state_present, rows[n_p:])
        return g_state + [jnp.zeros(shape, cdt) for _ in range(sum(need_p))]

    def reverse_step(consts, rows, carry, res, g_out, g_seq):
        g_state = carry[:n_s]
        if return_state_seq:
            g_state = [g + s if p else g for g, s, p in
                       zip(g_state, fill(g_state_present, g_seq), g_state_present)]
        env = dict(consts)
        env.update(zip(P, rows[:n_p]))
        env.update(zip(GS, g_state))
        env.update(zip(GO, fill(g_out_present, g_out)))
        for v, r in zip(cut, res):
            env[v] = (r != 0) if (not recompute and v.aval.dtype == jnp.bool_) else r
        eval_eqns(residuals.bwd_eqns, env)
        read = _reader(env, shape, cdt)
        ct = iter([read(v) for v in CT])
        g_prev = [next(ct) for _ in range(n_s)]
        g_x = [next(ct) for n in need_x if n]
        acc = [a + next(ct) for a in carry[n_s:]]
        return g_prev + acc, g_x

    def chunk(rows, carry, io, t0, c, n):
        consts = _constants(plan)
        if recompute:
            state = [io.load(i, c) for i in range(n_s)]
            xs = [[io.load(n_s + j, t0 + k) for j in range(n_x)] for k in range(n)]
            res = []
            for k in range(n):
                read = _primal(plan, residuals.fwd_eqns, consts, rows, state, xs[k])
                res.append([read(v) for v in cut])
                state = [read(v) for v in NS]
        else:
            res = [[io.load(i, t0 + k) for i in range(n_res_in)] for k in range(n)]
        g_out = [[io.load(n_res_in + i, t0 + k) for i in range(n_go)] for k in range(n)]
        g_seq = [[io.load(n_res_in + n_go + i, t0 + k) for i in range(n_gs)] for k in range(n)]
        for k in range(n - 1, -1, -1):
            carry, g_x = reverse_step(consts, rows, carry, res[k], g_out[k], g_seq[k])
            for j, g in enumerate(g_x):
                io.store(j, t0 + k, g)
        return carry

    def final(rows, carry):
        return [c for c, n in zip(carry[:n_s], need_s) if n] + list(carry[n_s:])

    res_in = (False,) * n_s + (True,) * n_x if recompute else (True,) * len(cut)
    row_out = tuple((d, "block" if k == "shared" else "row")
                    for d, k, n in zip(state_dtypes, s_kinds, need_s) if n) + tuple(
        (d, "block" if k == "shared" else "row")
        for d, k, n in zip(p_dtypes, p_kinds, need_p) if n)
    row_in = tuple(p_kinds) + (() if return_state_seq else ("row",) * sum(g_state_present))
    # g_out k (read at step t before g_x[t] is stored) may share the buffer of g_x k
    aliases = tuple((n_res_in + k, k) for k in range(min(n_go, sum(need_x))))
    return LoopSpec(
        seq_in_per_step=res_in + (True,) * (n_go + n_gs), row_in_kinds=row_in,
        seq_out=tuple((d, True) for d, n in zip(x_dtypes, need_x) if n), row_out=row_out,
        init=init, chunk=chunk, final=final, reverse=True, compute_dtype=cdt,
        chunk_len=chunk_len, aliases=aliases)
