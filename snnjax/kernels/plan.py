"""Trace, check and partition a step function for the kernel generator (backend-neutral).

``make_plan`` traces ``joint(state, x, params, g_state, g_out) -> (new_state, out, g_prev, g_x,
g_params)`` (``jax.vjp`` of the step on rows ``(1, block_n)``), flattens it
(``jaxpr_tools.flatten_jaxpr``: surrogate ``custom_vjp`` rules are already applied by ``vjp``),
checks that it is elementwise and splits its equations into the primal part (no cotangent input)
and the cotangent part. The backward kernel needs, per step, a set of primal values that
separates ``(state, x)`` from everything the cotangent part reads. Two ways to provide it:

* ``'save'``: the training forward writes a minimum-cost separating set to memory every step
  (``min_vertex_cut``; for LIF one row, ``h``); values already in memory (``x``, outputs, state
  sequences at compute precision) are read back instead of saved.
* ``'recompute'``: the training forward writes only the state at the start of every chunk of
  time steps (a checkpoint); the backward kernel re-runs the chunk's forward from it, keeping the
  separating values of the chunk in registers, then runs the chunk's reverse steps.

``residual_cost`` gives the bytes per neuron-step of each, for the generator to pick the cheaper.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from snnjax.kernels.jaxpr_tools import (TRITON_REWRITES, KernelLoweringError, check_elementwise,
                                        flatten_jaxpr, fold_constants, min_vertex_cut,
                                        needed_eqns)

RESIDUAL_MODES = ("auto", "save", "recompute")


@dataclasses.dataclass(frozen=True)
class Residuals:
    """What the backward's per-step cotangent equations read from the forward, and how.

    ``cut``: ``[(var, src)]`` with ``src`` ``('save', k)`` (k-th saved row), ``('x', i)``,
    ``('out', i)`` or ``('state', i)`` (read back from that array), or ``('reg', k)`` (recomputed
    in registers). ``fwd_eqns`` compute the new state, the outputs and the cut from
    ``(state, x, params)``; ``bwd_eqns`` compute the needed cotangents from the cut, the params
    and the incoming cotangents.
    """
    mode: str
    cut: tuple
    n_saved: int
    fwd_eqns: tuple
    bwd_eqns: tuple


@dataclasses.dataclass
class StepPlan:
    """The traced, checked and partitioned step (see module docstring)."""
    n_s: int
    n_x: int
    n_p: int
    n_o: int
    out_def: Any
    jaxpr: Any            # flat joint jaxpr
    consts: dict          # constvar -> (Python number, dtype)
    infer_eqns: list      # new state and outputs from (state, x, params)
    save: Residuals
    recompute: Residuals
    row_shape: tuple[int, ...]
    compute_dtype: Any
    need: tuple[bool, ...]  # which input cotangents (states, xs, params) the backward makes

    @property
    def residuals(self) -> list:
        """The saved-residual set (``'save'`` mode), as ``[(var, src)]``."""
        return list(self.save.cut)

    @property
    def n_saved(self) -> int:
        return self.save.n_saved


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


def make_plan(step: Callable, defs: tuple, cdt: Any, block_n: int | tuple[int, ...],
              reread_out: tuple[bool, ...], reread_state: tuple[bool, ...],
              supported: frozenset[str] | None, need: tuple[bool, ...] | None = None,
              rewrites: frozenset[str] = TRITON_REWRITES) -> StepPlan:
    """Trace, check and partition ``step`` for rows ``(1, block_n)`` of dtype ``cdt`` (or rows
    of the shape ``block_n`` when it is a tuple: the Mosaic backend's ``(block_n,)``).

    ``rewrites``: primitives replaced by simpler ones while flattening (``jaxpr_tools``).

    ``need``: per flat input (states, xs, params) whether its gradient is wanted (None: all);
    gradients nobody asked for are neither computed nor paid for in residuals.
    ``reread_out[i]`` / ``reread_state[i]``: output ``i`` / state sequence ``i`` is stored at
    compute precision, so the backward may read it back instead of a saved copy.
    Raises ``KernelLoweringError`` if the step cannot become a kernel.
    """
    state_def, x_def, p_def = defs
    n_s, n_x, n_p = state_def.num_leaves, x_def.num_leaves, p_def.num_leaves
    row_shape = tuple(block_n) if isinstance(block_n, tuple) else (1, block_n)
    row = jax.ShapeDtypeStruct(row_shape, cdt)
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
        if tuple(sh.shape) != row_shape:
            raise KernelLoweringError(f"step produced a value of shape {sh.shape} from rows of "
                                      f"shape {row_shape}; it must be elementwise")
    n_o = len(shapes) - n_s
    out_def = box[0]

    def joint(*a):
        prim = a[:n_s + n_x + n_p]
        cts = list(a[n_s + n_x + n_p:])
        outs, vjp_fn = jax.vjp(fstep, *prim)
        return list(outs) + list(vjp_fn(cts))

    try:
        closed = flatten_jaxpr(joint, [row] * (n_s + n_x + n_p + n_s + n_o), rewrites)
    except KernelLoweringError:
        raise
    except Exception as e:
        raise KernelLoweringError(f"step could not be differentiated on rows: {e}") from e
    check_elementwise(closed, row_shape, supported)
    jx = closed.jaxpr
    # Constants: captured scalars and everything computed from constants alone (e.g. a baked
    # param's sigmoid), as (Python number, dtype); a kernel body rebuilds them as uniform rows,
    # never as captured arrays or operations on literals.
    folded = fold_constants(jx, dict(zip(jx.constvars, closed.consts)))
    consts = {}
    for v, c in folded.items():
        flat = c.reshape(-1)
        if flat.size == 0 or np.any(flat != flat[0]) and not np.all(np.isnan(flat)):
            raise KernelLoweringError("step computes a non-uniform constant array; pass it as "
                                      "a param (or use backend='scan')")
        consts[v] = (flat[0].item(), c.dtype)
    ins = jx.invars
    S, X = ins[:n_s], ins[n_s:n_s + n_x]
    P = ins[n_s + n_x:n_s + n_x + n_p]
    G = ins[n_s + n_x + n_p:]
    outs = jx.outvars
    NS, O, CT_all = outs[:n_s], outs[n_s:n_s + n_o], outs[n_s + n_o:]
    need = tuple(need) if need is not None else (True,) * len(CT_all)
    # state cotangents carry the reverse recurrence: always computed
    CT = [v for v, n in zip(CT_all, (True,) * n_s + need[n_s:]) if n]
    live = needed_eqns(jx, list(NS) + list(O) + CT, list(ins) + list(consts))

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
        return v.aval.shape == row_shape and (
            jnp.issubdtype(v.aval.dtype, jnp.floating) or v.aval.dtype == jnp.bool_)

    candidates = [v for eqn in primal for v in eqn.outvars if storable(v)] + list(S) + list(X)
    known_fwd = list(S) + list(X) + list(P) + list(consts)
    known_bwd = list(P) + list(G) + list(consts)

    def residuals(mode: str, cut: list, srcs: list, n_saved: int) -> Residuals:
        fwd = needed_eqns(jx, list(NS) + list(O) + cut, known_fwd)
        bwd = needed_eqns(jx, CT, known_bwd + cut)
        return Residuals(mode, tuple(zip(cut, srcs)), n_saved, tuple(fwd), tuple(bwd))

    # 'save': values already in memory at compute precision are re-read (cost 1) instead of
    # written and read (cost 2).
    reread: dict = {}
    for i, v in enumerate(X):
        reread.setdefault(v, ("x", i))
    for i, v in enumerate(O):
        if i < len(reread_out) and reread_out[i] and not isinstance(v, jcore.Literal):
            reread.setdefault(v, ("out", i))
    for i, v in enumerate(NS):
        if i < len(reread_state) and reread_state[i] and not isinstance(v, jcore.Literal):
            reread.setdefault(v, ("state", i))
    cost = {v: 2 for v in candidates}
    cost.update({v: 1 for v in reread})
    cut = min_vertex_cut(jx, list(S) + list(X), sinks, cost, primal)
    srcs, n_saved = [], 0
    for v in cut:
        src = reread.get(v)
        if src is None:
            src, n_saved = ("save", n_saved), n_saved + 1
        srcs.append(src)
    save = residuals("save", cut, srcs, n_saved)

    # 'recompute': the cut lives in registers for one chunk; fewest values = fewest registers.
    rcut = min_vertex_cut(jx, list(S) + list(X), sinks, {v: 1 for v in candidates}, primal)
    recompute = residuals("recompute", rcut, [("reg", k) for k in range(len(rcut))], 0)

    infer_eqns = needed_eqns(jx, list(NS) + list(O), known_fwd)
    return StepPlan(n_s, n_x, n_p, n_o, out_def, jx, consts, infer_eqns, save, recompute,
                    row_shape, cdt, need)


def residual_cost(plan: StepPlan, mode: str, *, x_itemsizes: tuple[int, ...],
                  out_itemsize: int, state_itemsizes: tuple[int, ...], chunk_len: int) -> float:
    """Extra bytes per neuron-step that mode ``mode`` moves through memory for the backward
    (beyond reading ``x`` and writing outputs in the forward, and reading cotangents and writing
    input gradients in the backward)."""
    csize = np.dtype(plan.compute_dtype).itemsize
    if mode == "save":   # a saved row is written and read; the others are only read back
        size = {"save": lambda i: 2 * csize, "x": lambda i: x_itemsizes[i],
                "out": lambda i: out_itemsize, "state": lambda i: state_itemsizes[i]}
        return float(sum(size[kind](i) for _, (kind, i) in plan.save.cut))
    # recompute: x read again, one checkpoint row per state and chunk written and read
    return float(sum(x_itemsizes)) + 2.0 * csize * plan.n_s / chunk_len


def choose_residuals(plan: StepPlan, mode: str, **sizes: Any) -> Residuals:
    """``plan.save`` or ``plan.recompute``: the requested one, or for ``'auto'`` the one that
    moves fewer bytes (``residual_cost``; ties keep ``'save'``)."""
    if mode not in RESIDUAL_MODES:
        raise ValueError(f"residuals must be one of {RESIDUAL_MODES}, got {mode!r}")
    if mode == "auto":
        cheaper = residual_cost(plan, "recompute", **sizes) < residual_cost(plan, "save", **sizes)
        mode = "recompute" if cheaper else "save"
    return plan.recompute if mode == "recompute" else plan.save
