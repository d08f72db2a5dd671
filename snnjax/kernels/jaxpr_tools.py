"""Jaxpr utilities for the kernel generator (backend-neutral).

* ``inline_eval``: evaluate a jaxpr while inlining call-like primitives (``custom_vjp_call``,
  ``custom_jvp_call``, ``pjit``, ``closed_call``, remat) and dropping ``stop_gradient``, so that a
  kernel lowering sees only plain elementwise primitives.
* ``check_elementwise``: reject anything that is not an elementwise primitive on rows.
* ``eval_eqns``: evaluate a chosen, ordered subset of a flat jaxpr's equations.
* ``min_vertex_cut``: pick the cheapest set of values that separates the step's sources from
  what the backward needs (what the training forward saves).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore


class KernelLoweringError(ValueError):
    """The step function cannot be turned into a fused kernel (use ``backend='scan'``)."""


# Elementwise primitives the generator accepts (backend-neutral). A backend may support fewer.
ELEMENTWISE: frozenset[str] = frozenset("""
add sub mul div neg abs sign max min pow integer_pow square sqrt rsqrt cbrt exp exp2 log log1p
expm1 tanh logistic erf erfc erf_inv sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh
floor ceil round nextafter is_finite clamp select_n eq ne lt le gt ge and or not xor rem
convert_element_type bitcast_convert_type broadcast_in_dim add_any copy copy_p
""".split())   # (a bitcast between widths changes the shape: check_elementwise rejects it)

# Call-like primitives whose body is evaluated in place. Value: param holding the body.
_INLINE = {
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "pjit": "jaxpr",
    "jit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "remat": "jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
}
_IDENTITY = frozenset({"stop_gradient", "optimization_barrier", "copy", "copy_p",
                       # sharding annotations (traced inside shard_map / a mesh): no-ops on rows
                       "reshard", "pvary", "pcast", "sharding_constraint"})


def _open(j: Any) -> tuple[Any, Sequence[Any]]:
    """(jaxpr, consts) of a Jaxpr or ClosedJaxpr."""
    if isinstance(j, jcore.ClosedJaxpr):
        return j.jaxpr, j.consts
    return j, ()


def _read(env: dict, v: Any) -> Any:
    return v.val if isinstance(v, jcore.Literal) else env[v]


def _round_via_floor(x: Any, rounding_method: Any) -> Any:
    """``round`` from ``floor`` and selects (the Triton lowering has no ``round`` rule)."""
    fl = jax.lax.floor(x)
    diff = x - fl
    tie = diff == 0.5
    if int(rounding_method) == int(jax.lax.RoundingMethod.TO_NEAREST_EVEN):
        odd = jax.lax.floor(fl * 0.5) * 2.0 != fl
        up = (diff > 0.5) | (tie & odd)
    else:  # away from zero
        up = (diff > 0.5) | (tie & (x > 0))
    return jax.lax.select(up, fl + 1.0, fl)


# Primitives rewritten into supported ones while inlining: name -> fn(invals, params) -> outs.
# A backend names the ones it needs (``inline_eval(..., rewrites=...)``); the default is the
# Triton backend's set. The rewrites (``snnjax.kernels.rewrites``) use only add/mul/div,
# comparisons, selects, casts, exp and log.
def _rewrite_table() -> dict:
    from snnjax.kernels import rewrites as rw
    return {
        "round": lambda invals, params: [_round_via_floor(
            invals[0], params.get("rounding_method", jax.lax.RoundingMethod.AWAY_FROM_ZERO))],
        "add_any": lambda invals, params: [jax.lax.add(*invals)],
        "floor": lambda invals, params: [rw.floor(invals[0])],
        "ceil": lambda invals, params: [rw.ceil(invals[0])],
        "atan": lambda invals, params: [rw.atan(invals[0])],
        "expm1": lambda invals, params: [rw.expm1(invals[0])],
        "log1p": lambda invals, params: [rw.log1p(invals[0])],
        "erf": lambda invals, params: [rw.erf(invals[0])],
        "erfc": lambda invals, params: [rw.erfc(invals[0])],
        "sqrt": lambda invals, params: [rw.sqrt(invals[0])],
        "polynomial": lambda invals, params: [rw.polynomial(*invals)],
        "one_minus_square": lambda invals, params: [rw.one_minus_square(invals[0])],
        "integer_pow": lambda invals, params: [rw.integer_pow(invals[0], params["y"])],
        "max": lambda invals, params: [_nan_propagating(jax.lax.gt, *invals)],
        "min": lambda invals, params: [_nan_propagating(jax.lax.lt, *invals)],
        "clamp": lambda invals, params: [_nan_clamp(*invals)],
    }


def _nan_propagating(pick_first: Callable, a: Any, b: Any) -> Any:
    """``max`` / ``min`` that return NaN when either operand is NaN, as XLA's do (the Triton
    lowering's ``maximum`` returns the other operand): the non-finite policy on every backend."""
    # an operand known not to be NaN (a literal or constant: the bound of a clamp) needs no
    # NaN test of its own: a clamp costs one compare and one select per bound
    a_nan, b_nan = _may_be_nan(a), _may_be_nan(b)
    a, b = jnp.broadcast_arrays(a, b)
    if not b_nan:   # NaN in a: the comparison is False and a is kept
        return jax.lax.select(pick_first(b, a), b, a)
    if not a_nan:
        return jax.lax.select(pick_first(a, b), a, b)
    chosen = jax.lax.select(pick_first(a, b), a, b)
    return jax.lax.select(a != a, a, jax.lax.select(b != b, b, chosen))


def _nan_clamp(lo: Any, x: Any, hi: Any) -> Any:
    """``clamp(lo, x, hi)`` as XLA's (``min(max(x, lo), hi)``, NaN kept)."""
    return _nan_propagating(jax.lax.lt, _nan_propagating(jax.lax.gt, x, lo), hi)


def _may_be_nan(value: Any) -> bool:
    """False only for a concrete value with no NaN (traced values may be NaN)."""
    try:
        return bool(np.isnan(np.asarray(value, dtype=np.float64)).any())
    except (jax.errors.TracerArrayConversionError, TypeError, ValueError):   # traced
        return True


REWRITABLE: frozenset[str] = frozenset(
    "round add_any floor ceil atan expm1 log1p erf erfc sqrt polynomial one_minus_square".split())
# rewritten for Mosaic although it has a rule: the rule takes only exponents >= 2 and -1
PARTIAL: frozenset[str] = frozenset({"integer_pow"})
TRITON_REWRITES: frozenset[str] = frozenset({"round", "max", "min", "clamp"})


def inline_eval(jaxpr: Any, consts: Sequence[Any], *args: Any,
                rewrites: frozenset[str] = TRITON_REWRITES) -> list[Any]:
    """Evaluate ``jaxpr`` on ``args``, inlining call primitives and removing ``stop_gradient``;
    the primitives named in ``rewrites`` (a subset of ``REWRITABLE``) are replaced by
    equivalent sequences of simpler ones.

    Traced under ``jax.make_jaxpr`` this yields a flat jaxpr of plain primitives.
    """
    table = _rewrite_table() if rewrites else {}
    env: dict = {}
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        invals = [_read(env, v) for v in eqn.invars]
        if name in _INLINE and _INLINE[name] in eqn.params:
            sub, sub_consts = _open(eqn.params[_INLINE[name]])
            outs = inline_eval(sub, sub_consts, *invals, rewrites=rewrites)
        elif name == "reshape" and tuple(eqn.params["new_sizes"]) == tuple(invals[0].shape):
            outs = invals   # an identity reshape (vjp adds them, with a sharding, under a mesh)
        elif name in rewrites and _is_float(eqn):
            outs = table[name](invals, eqn.params)
        else:
            outs = _apply(eqn, invals)
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [_read(env, v) for v in jaxpr.outvars]


def _is_float(eqn: Any) -> bool:
    """Rewrites are written for floating operands (``add_any`` of integers stays as it is)."""
    return all(np.issubdtype(v.aval.dtype, np.floating) for v in eqn.outvars)


def flatten_jaxpr(fn: Any, avals: Sequence[Any],
                  rewrites: frozenset[str] = TRITON_REWRITES) -> jcore.ClosedJaxpr:
    """Trace ``fn(*avals)`` and re-trace it through ``inline_eval``: a jaxpr without calls."""
    outer = jax.make_jaxpr(fn)(*avals)
    return jax.make_jaxpr(lambda *a: inline_eval(outer.jaxpr, outer.consts, *a,
                                                 rewrites=rewrites))(*avals)


def check_elementwise(closed: jcore.ClosedJaxpr, row_shape: tuple[int, ...],
                      supported: Iterable[str] | None = None, where: str = "step") -> None:
    """Raise ``KernelLoweringError`` unless every equation is a whitelisted elementwise op on
    rows of ``row_shape`` (or scalars) and no array constant was captured."""
    allowed = ELEMENTWISE if supported is None else ELEMENTWISE & frozenset(supported)
    for c in closed.consts:
        if getattr(c, "ndim", 0) != 0:
            raise KernelLoweringError(
                f"{where} captures an array constant of shape {c.shape}; pass it as a param "
                "(or use backend='scan')")
    for eqn in closed.jaxpr.eqns:
        name = eqn.primitive.name
        if name not in allowed:
            kind = "is not elementwise" if name not in ELEMENTWISE else \
                "has no lowering in this kernel backend"
            raise KernelLoweringError(
                f"{where} uses '{name}' which the kernel generator cannot lower ({kind}); "
                "use backend='scan'")
        for v in list(eqn.outvars) + [v for v in eqn.invars if not isinstance(v, jcore.Literal)]:
            shape = tuple(v.aval.shape)
            if shape not in ((), row_shape):
                raise KernelLoweringError(
                    f"{where} makes a value of shape {shape} (op '{name}'); kernels need every "
                    f"value to be per-neuron (shape {row_shape}) or a scalar; use backend='scan'")


def _apply(eqn: Any, invals: Sequence[Any]) -> Sequence[Any]:
    """The outputs of one flat equation on ``invals`` (identity primitives pass through; an
    ``accuracy`` request, which JAX 0.12's own derivative rules make and no kernel lowering
    takes, is dropped: the default implementation)."""
    if eqn.primitive.name in _IDENTITY:
        return invals
    params = eqn.params
    if params.get("accuracy") is not None:
        params = {**params, "accuracy": None}
    out = eqn.primitive.bind(*invals, **params)
    return out if eqn.primitive.multiple_results else [out]


def fold_constants(jaxpr: Any, consts: dict) -> dict:
    """Values of ``consts`` plus every equation whose inputs are all literals or constants,
    evaluated now (host numpy arrays). Kernel lowerings then never see an operation on
    constants alone (Pallas-Triton has no rule for e.g. ``neg`` of a literal)."""
    env = {v: np.asarray(c) for v, c in consts.items()}
    for eqn in jaxpr.eqns:
        if all(isinstance(v, jcore.Literal) or v in env for v in eqn.invars):
            with jax.ensure_compile_time_eval():
                outs = _apply(eqn, [_read(env, v) for v in eqn.invars])
            env.update((v, np.asarray(o)) for v, o in zip(eqn.outvars, outs))
    return env


def eval_eqns(eqns: Sequence[Any], env: dict) -> dict:
    """Evaluate flat ``eqns`` in order, extending ``env`` (var -> value). Returns ``env``."""
    for eqn in eqns:
        env.update(zip(eqn.outvars, _apply(eqn, [_read(env, v) for v in eqn.invars])))
    return env


def needed_eqns(jaxpr: Any, targets: Iterable[Any], known: Iterable[Any]) -> list[Any]:
    """The equations (in program order) needed to compute ``targets`` from ``known`` vars."""
    known = set(known)
    producer = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.outvars:
            producer[v] = i
    need: set[int] = set()
    stack = [v for v in targets if not isinstance(v, jcore.Literal)]
    seen: set = set()
    while stack:
        v = stack.pop()
        if v in seen or v in known:
            continue
        seen.add(v)
        if v not in producer:
            raise AssertionError(f"value {v} is neither known nor computed")
        i = producer[v]
        if i not in need:
            need.add(i)
            stack.extend(u for u in jaxpr.eqns[i].invars if not isinstance(u, jcore.Literal))
    return [jaxpr.eqns[i] for i in sorted(need)]


def min_vertex_cut(jaxpr: Any, sources: Sequence[Any], sinks: Iterable[Any],
                   cost: dict, eqns: Sequence[Any]) -> list[Any]:
    """Cheapest set of vars such that every path (through ``eqns``) from a source var to a sink
    var passes through one of them (sources and sinks may themselves be chosen).

    ``cost[var]`` is the vertex capacity (vars missing from ``cost`` cannot be chosen).
    Edmonds-Karp on the split-vertex graph; jaxprs of neuron steps are small.
    """
    inf = 1 << 30
    graph: dict = {}

    def edge(a: Any, b: Any, c: int) -> None:
        graph.setdefault(a, {})
        graph.setdefault(b, {})
        graph[a][b] = graph[a].get(b, 0) + c
        graph[b].setdefault(a, 0)

    reach = set(sources)
    for eqn in eqns:  # forward reachability: only source-dependent vars matter
        ins = [v for v in eqn.invars if not isinstance(v, jcore.Literal) and v in reach]
        for w in eqn.outvars:
            if ins:
                reach.add(w)
                for u in ins:
                    edge(("out", u), ("in", w), inf)
    for v in reach:
        edge(("in", v), ("out", v), cost.get(v, inf))
    for v in sources:
        edge("S", ("in", v), inf)
    sinks = [v for v in sinks if not isinstance(v, jcore.Literal) and v in reach]
    for v in sinks:
        edge(("out", v), "T", inf)
    if not sinks:
        return []
    while True:  # augment along shortest paths
        parent: dict[str, str | None] = {"S": None}
        q = deque(["S"])
        while q and "T" not in parent:
            a = q.popleft()
            for b, c in graph[a].items():
                if c > 0 and b not in parent:
                    parent[b] = a
                    q.append(b)
        if "T" not in parent:
            break
        path, b = [], "T"
        while (prev := parent[b]) is not None:
            path.append((prev, b))
            b = prev
        f = min(graph[a][b] for a, b in path)
        if f >= inf:
            raise KernelLoweringError("no finite set of values separates the step's inputs "
                                      "from its backward (non-float intermediates?)")
        for a, b in path:
            graph[a][b] -= f
            graph[b][a] += f
    side = {"S"}
    q = deque(["S"])
    while q:
        a = q.popleft()
        for b, c in graph[a].items():
            if c > 0 and b not in side:
                side.add(b)
                q.append(b)
    cut = [v for v in reach if ("in", v) in side and ("out", v) not in side]
    order = {v: i for i, v in enumerate(sources)}
    for i, eqn in enumerate(eqns):
        for v in eqn.outvars:
            order.setdefault(v, len(sources) + i)
    return sorted(cut, key=lambda v: order[v])
