"""Sequence engines on inputs sharded over a device mesh (``jax.sharding``).

A neuron's step is elementwise over neurons, so a multi-step call on inputs sharded along their
neuron axes (batch, channels, ...) runs on every shard independently: no gather, no
communication for the values or the input gradient. Three contexts, one entry point
(:func:`call`, used by :func:`snnjax.kernels.multi_step` around whatever engine it picked):

* **Inside a ``shard_map``** (a user's own; axes ``Manual``): the engine runs on the local
  block. With ``check_vma=True`` inputs and traced parameters are marked varying over the axes
  the inputs vary over (``jax.lax.pcast``: a replicated parameter's gradient is then summed over
  the shards, ``pcast``'s transpose being a ``psum``), and each state leaf over the axes its
  update varies over (a fixed point found by tracing the step: the ``lax.scan`` carry keeps one
  type, and a state computed from ``psum``'d values, like MPBN's statistics, stays replicated).
  Compiled Triton kernels declare their outputs with the same varying axes (:func:`out_struct`);
  the Mosaic kernels cannot (their outputs carry no varying types), so ``backend='mosaic'`` runs
  the Triton kernels there, with a warning; Pallas *interpret* mode cannot run there in JAX
  0.10 and falls back to ``lax.scan`` with a warning.
* **Under ``jax.set_mesh`` with Explicit axes** (shardings are part of the types): a sharded
  time axis is gathered first (the recurrence couples all steps) and the outputs are resharded
  back, so outputs always keep the input's sharding; a state sharded otherwise than the input is
  resharded to the input's sharding (the collective it needs). ``lax.scan`` then runs typed by
  the shardings (JAX adds the collectives of a step that reduces over a sharded axis). The
  kernels run inside ``jax.shard_map`` over the input's sharding with every state and traced
  parameter broadcast per neuron and sharded like the input, so no operand is replicated, no
  gradient comes back unreduced (a shared parameter's is summed outside, by XLA) and
  ``check_vma=False`` is safe (Pallas interpret mode needs it).
* **Under plain ``jax.jit`` with ``NamedSharding`` inputs** (Auto axes: the library cannot see
  the sharding while tracing): ``lax.scan`` is partitioned by XLA; every fused-kernel launch is a
  ``custom_partitioning`` op (:func:`launcher`) on unpadded ``[L, N]`` operands whose rule keeps
  the neuron axis sharded and replicates the time axis; each shard pads its own block, and the
  per-program partial sums of shared-parameter gradients are reduced in the shard and then over
  the shards (the one all-reduce such a gradient needs). Not partitioned (correct, but XLA
  gathers): launches under ``jax.vmap`` (no batching rule for ``custom_partitioning``) and
  neuron counts that the device count does not divide.

The flattened neuron axis ``N = prod(S)`` of the kernels stays sharded without communication
when the sharded axes of ``S`` are its leading ones (e.g. the batch axis); sharding a trailing
axis alone (e.g. only the feature axis of ``[B, F]``) makes XLA re-layout the flattened operand.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.core  # noqa: F401  (jax.core.Tracer below: type checkers need the submodule import)
import jax.numpy as jnp
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec as P

from snnjax.kernels.scan import scan_multi_step

try:
    from jax._src.core import ShardingTypeError   # JAX 0.10: no public name
except ImportError:   # pragma: no cover
    ShardingTypeError = TypeError

Engine = Callable[..., tuple[Any, Any]]


# --- helpers -----------------------------------------------------------------------------------

def _vma(a: Any) -> frozenset:
    try:
        mat = getattr(jax.typeof(a), "manual_axis_type", None)
    except TypeError:   # a Python number
        return frozenset()
    return frozenset(getattr(mat, "varying", ())) if mat is not None else frozenset()


def varying_axes(*trees: Any) -> frozenset:
    """The manual mesh axes any leaf of ``trees`` varies over (inside ``shard_map``)."""
    out: frozenset = frozenset()
    for leaf in jax.tree_util.tree_leaves(trees):
        out |= _vma(leaf)
    return out


def _mark_varying(tree: Any, axes: frozenset, arrays_only: bool) -> Any:
    """Leaves of ``tree`` marked varying over ``axes`` (Python numbers kept unless asked)."""
    mesh = jax.sharding.get_abstract_mesh()
    order = [a for a in mesh.axis_names if a in axes]

    def mark(leaf):
        if arrays_only and not isinstance(leaf, jax.core.Tracer):
            return leaf     # Python numbers / concrete arrays stay compile-time constants
        leaf = jnp.asarray(leaf)
        missing = tuple(a for a in order if a not in _vma(leaf))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf
    return jax.tree_util.tree_map(mark, tree)


def out_struct(shape: Sequence[int], dtype: Any, operands: Sequence[Any]) -> jax.ShapeDtypeStruct:
    """``jax.ShapeDtypeStruct`` of a kernel output: varying over the manual axes its operands vary
    over (``pallas_call`` inside ``shard_map`` with ``check_vma=True`` needs it)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not mesh.manual_axes:
        return jax.ShapeDtypeStruct(tuple(shape), dtype)
    axes = varying_axes(list(operands))
    mat = next((jax.typeof(o).manual_axis_type for o in operands if _vma(o) == axes), None)
    if mat is None:
        from jax._src import core as _core    # no public constructor of ManualAxisType
        mat = _core.ManualAxisType(varying=axes)
    return jax.ShapeDtypeStruct(tuple(shape), dtype, manual_axis_type=mat)


def _spec_of(a: Any) -> tuple:
    """The PartitionSpec entries of ``a``'s type (Explicit axes), one per dimension."""
    sh = getattr(jax.typeof(a), "sharding", None)
    spec = tuple(sh.spec) if sh is not None and sh.spec is not None else ()
    return spec + (None,) * (jnp.ndim(a) - len(spec))


def _aligned(shape: tuple, ref_shape: tuple, ref_spec: tuple) -> tuple:
    """Spec for a leaf broadcastable to ``ref_shape``: its trailing dims take the reference's
    entries where the sizes agree; broadcast (size-1) and extra leading dims are replicated."""
    k = len(shape)
    out = []
    for i, n in enumerate(shape):
        j = len(ref_shape) - k + i
        out.append(ref_spec[j] if 0 <= j and ref_shape[j] == n else None)
    return tuple(out)


def _explicit_mesh(*trees: Any) -> Any:
    """The mesh of the first operand whose type is sharded over Explicit axes, else None."""
    for leaf in jax.tree_util.tree_leaves(trees):
        sh = getattr(jax.typeof(leaf), "sharding", None) if isinstance(leaf, jax.Array) else None
        mesh = getattr(sh, "mesh", None)
        if mesh is not None and not mesh.empty and mesh.explicit_axes:
            return mesh
    return None


def _axis_names(entry: Any) -> tuple:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


# --- entry point -------------------------------------------------------------------------------

def call(engine: Engine, step: Callable, state0: Any, xs: Any, params: Any, *,
         return_state_seq: bool = False, **kwargs: Any) -> tuple[Any, Any]:
    """``engine(step, state0, xs, params, return_state_seq=..., **kwargs)`` run correctly on
    sharded operands (see the module docstring). ``xs`` leaves ``[T, *S]``, ``state0`` leaves
    broadcastable to ``S``, ``params`` leaves scalars or broadcastable to ``S``."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        # arrays sharded under set_mesh keep their Explicit types outside it: use their mesh
        typed = _explicit_mesh(xs, state0, params)
        if typed is not None:
            with jax.sharding.use_abstract_mesh(typed):
                return call(engine, step, state0, xs, params,
                            return_state_seq=return_state_seq, **kwargs)
    run = functools.partial(engine, return_state_seq=return_state_seq, **kwargs)
    if not mesh.empty and mesh.manual_axes:
        return _in_manual(run, step, state0, xs, params)
    if not mesh.empty and mesh.explicit_axes:
        return _in_explicit(run, mesh, step, state0, xs, params, return_state_seq,
                            kernel=engine is not scan_multi_step)
    return run(step, state0, xs, params)


_warned_interpret: set = set()
_warned_mosaic: set = set()


def _scan_twin(run: Callable) -> Callable:
    """The ``lax.scan`` engine in place of the kernel engine ``run`` (same results)."""
    return functools.partial(scan_multi_step,
                             return_state_seq=run.keywords.get("return_state_seq", False))


def _in_manual(run: Callable, step: Callable, state0: Any, xs: Any, params: Any) -> Any:
    axes = varying_axes(state0, xs, params)
    if not axes:
        return run(step, state0, xs, params)
    cfg = run.keywords.get("config")
    if cfg is not None and getattr(cfg, "interpret", False):
        # Pallas *interpret* mode (no GPU) cannot run on values varying over manual axes under
        # check_vma=True in JAX 0.10 (its discharged grid loop loses the varying types); the
        # compiled kernels can. Without a GPU, use the lax.scan twin (same results).
        if step not in _warned_interpret:
            _warned_interpret.add(step)
            warnings.warn("snnjax.kernels: Pallas interpret mode does not run inside shard_map "
                          "(varying manual axes); using lax.scan on this machine", stacklevel=4)
        run = _scan_twin(run)
    elif cfg is not None and getattr(cfg, "backend", None) == "mosaic":
        # the Mosaic kernels' outputs carry no varying-axis types (check_vma=True rejects them
        # in the kernel's loop, seen on the H200 with JAX 0.11.2); the Triton kernels declare
        # them (out_struct): use those, else the lax.scan twin
        from snnjax.kernels.generator import backend_available   # generator imports this module
        tri = backend_available("triton")
        if step not in _warned_mosaic:
            _warned_mosaic.add(step)
            warnings.warn("snnjax.kernels: the Mosaic GPU kernels do not run inside shard_map "
                          "(varying manual axes); using the "
                          + ("Triton kernels (backend='pallas')" if tri else "lax.scan path"),
                          stacklevel=4)
        run = (functools.partial(run.func, *run.args, **{
            **run.keywords, "config": dataclasses.replace(cfg, backend="triton")})
            if tri else _scan_twin(run))
    # the scan carry's type: each state leaf varies over the axes its update varies over
    # (a fixed point: a state computed from psum'd values, e.g. MPBN's statistics, stays
    # replicated); inputs and traced parameters vary over all of them
    xs = _mark_varying(xs, axes, False)
    params = _mark_varying(params, axes, True)
    x0 = jax.tree_util.tree_map(lambda a: a[0], xs)
    for _ in range(4):
        new_state, _ = step(state0, x0, params)   # traced only: XLA removes the unused values
        want = [_vma(a) | _vma(s) for a, s in zip(jax.tree_util.tree_leaves(new_state),
                                                   jax.tree_util.tree_leaves(state0))]
        leaves, s_def = jax.tree_util.tree_flatten(state0)
        if all(_vma(s) == w for s, w in zip(leaves, want)):
            break
        state0 = jax.tree_util.tree_unflatten(
            s_def, [_mark_varying(jnp.asarray(s), w, False) for s, w in zip(leaves, want)])
    return run(step, state0, xs, params)


def _in_explicit(run: Callable, mesh: Any, step: Callable, state0: Any, xs: Any, params: Any,
                 return_state_seq: bool, kernel: bool) -> Any:
    x_leaves, x_def = jax.tree_util.tree_flatten(xs)
    x_leaves = [jnp.asarray(x) for x in x_leaves]
    ref = x_leaves[0]
    ref_shape, ref_spec = tuple(ref.shape), _spec_of(ref)
    S, s_spec = ref_shape[1:], ref_spec[1:]

    def reshard(a, spec):
        return a if _spec_of(a) == spec else jax.reshard(a, P(*spec))

    # the recurrence couples every time step: a sharded time axis is gathered (restored below)
    x_specs = [(None,) + _aligned(tuple(x.shape[1:]), S, s_spec) for x in x_leaves]
    x_leaves = [reshard(x, sp) for x, sp in zip(x_leaves, x_specs)]
    s_leaves, s_def = jax.tree_util.tree_flatten(state0)
    p_leaves, p_def = jax.tree_util.tree_flatten(params)
    dyn = [i for i, p in enumerate(p_leaves) if isinstance(p, jax.core.Tracer)]
    p_dyn = [p_leaves[i] for i in dyn]
    if kernel:
        # every operand of the kernels per neuron and sharded like the input: the shard_map then
        # needs no varying-axis typing (check_vma=False, which Pallas interpret mode needs too)
        # and returns no unreduced gradient (a shared parameter's is summed outside, by XLA)
        s_leaves = [jnp.broadcast_to(jnp.asarray(a), S) for a in s_leaves]
        p_dyn = [jnp.broadcast_to(jnp.asarray(a), S) for a in p_dyn]
    s_specs = [_aligned(tuple(jnp.shape(a)), S, s_spec) for a in s_leaves]
    p_specs = [_aligned(tuple(jnp.shape(a)), S, s_spec) for a in p_dyn]
    # a state sharded otherwise than the input is resharded to the input's sharding
    s_leaves = [reshard(jnp.asarray(a), sp) for a, sp in zip(s_leaves, s_specs)]
    p_dyn = [reshard(a, sp) for a, sp in zip(p_dyn, p_specs)]

    def trees(s_l, x_l, p_l):
        leaves = list(p_leaves)
        for i, p in zip(dyn, p_l):
            leaves[i] = p
        return (jax.tree_util.tree_unflatten(s_def, s_l), jax.tree_util.tree_unflatten(x_def, x_l),
                jax.tree_util.tree_unflatten(p_def, leaves))

    if not kernel:
        # lax.scan is typed by the shardings (a step that reduces over a sharded axis, e.g. MPBN's
        # batch statistics, gets its collective from JAX): only the carry's type is fixed here
        try:
            state, outs = run(step, *trees(s_leaves, x_leaves, p_dyn))
        except ShardingTypeError:
            # a step that reshapes across a sharded neuron axis (ILC's connection) cannot be
            # typed: run it on gathered operands, then shard the results like the input again
            rep = lambda a: reshard(a, (None,) * jnp.ndim(a))
            state, outs = run(step, *trees([rep(a) for a in s_leaves], [rep(a) for a in x_leaves],
                                           [rep(a) for a in p_dyn]))
            like = lambda a: reshard(a, (None,) + s_spec if jnp.ndim(a) == len(ref_shape)
                                     else _aligned(tuple(jnp.shape(a)), S, s_spec))
            state, outs = jax.tree_util.tree_map(like, (state, outs))
        return _restore_time(state, outs, ref_shape, ref_spec, return_state_seq)

    # output specs from the global shapes (every engine returns what lax.scan returns)
    shapes = jax.eval_shape(lambda *a: scan_multi_step(step, *trees(*a),
                                                       return_state_seq=return_state_seq),
                            s_leaves, x_leaves, p_dyn)

    def o_spec(sd):
        shape = tuple(sd.shape)
        if len(shape) == len(ref_shape) and shape[0] == ref_shape[0] and shape[1:] == S:
            return P(None, *s_spec)
        return P(*_aligned(shape, S, s_spec))
    f = jax.shard_map(lambda *a: run(step, *trees(*a)), mesh=mesh, in_specs=(
        [P(*sp) for sp in s_specs], [P(*sp) for sp in x_specs], [P(*sp) for sp in p_specs]),
        out_specs=jax.tree_util.tree_map(o_spec, shapes), axis_names=set(mesh.explicit_axes),
        check_vma=False)
    state, outs = f(s_leaves, x_leaves, p_dyn)
    return _restore_time(state, outs, ref_shape, ref_spec, return_state_seq)


def _restore_time(state: Any, outs: Any, ref_shape: tuple, ref_spec: tuple,
                  return_state_seq: bool) -> tuple[Any, Any]:
    """Sequences resharded along time as the input was (the run gathered the time axis)."""
    if ref_spec[0] is None:
        return state, outs
    T = ref_shape[0]

    def restore(a):
        if jnp.ndim(a) == len(ref_shape) and a.shape[0] == T:
            return jax.reshard(a, P(ref_spec[0], *_spec_of(a)[1:]))
        return a
    outs = jax.tree_util.tree_map(restore, outs)
    if return_state_seq:
        state = jax.tree_util.tree_map(restore, state)
    return state, outs


# --- fused-kernel launches under Auto axes -----------------------------------------------------

def _partitionable(operands: Sequence[Any]) -> bool:
    """Whether a launch can be a ``custom_partitioning`` op: more than one device, not inside a
    manual or explicit mesh context (handled by ``call``), not under ``jax.vmap`` (which has no
    batching rule for it: a vmapped launch stays a plain kernel call)."""
    try:
        from jax._src.interpreters.batching import BatchTracer   # no public name in JAX 0.10
    except ImportError:   # pragma: no cover
        BatchTracer = ()
    mesh = jax.sharding.get_abstract_mesh()
    if jax.device_count() < 2 or (not mesh.empty and (mesh.manual_axes or mesh.explicit_axes)):
        return False
    return not any(isinstance(a, BatchTracer) for a in operands)


def launcher(run_loop: Callable, *, T: int, block_n: int, cfg: Any,
             padded_size: Callable[[int, int], int] | None = None) -> Callable:
    """A kernel launch ``(spec, seq_in, row_in) -> (seq_out, row_out)`` on unpadded operands,
    partitioned along the neuron axis under ``jax.jit`` (``custom_partitioning``).

    ``run_loop`` is a kernel backend's launch on padded operands (``pallas_triton.run_loop``
    or a sibling): ``seq_in`` ``[L, Np]``, ``row_in`` ``[1, Np]`` or shared ``[1, block_n]``.
    Here operands are ``[L, N]`` / ``[1, N]`` / shared ``[1, block_n]``; each shard pads its own
    ``N`` to a multiple of ``block_n`` by repeating its last neuron (finite values, discarded);
    ``'block'`` row outputs (per-program partial sums of a shared row's gradient) come back
    summed over the shard's real neurons as ``[1, block_n]`` and, across shards, summed again.
    """
    def launch(spec: Any, seq_in: Sequence[Any], row_in: Sequence[Any]) -> tuple[list, list]:
        seq_in, row_in = list(seq_in), list(row_in)
        N = (seq_in[0] if seq_in else next(r for r, k in zip(row_in, spec.row_in_kinds)
                                          if k != "shared")).shape[1]
        kinds = tuple(spec.row_in_kinds)
        n_seq, n_sout = len(seq_in), len(spec.seq_out)
        out_kinds = tuple(k for _, k in spec.row_out)

        def local(*flat: Any, psum_axes: tuple = ()) -> tuple:
            s_in, r_in = list(flat[:n_seq]), list(flat[n_seq:])
            n = (s_in[0] if s_in else next(r for r, k in zip(r_in, kinds)
                                           if k != "shared")).shape[1]
            # the backend's operand width (Triton: whole blocks; Mosaic: n, its tail overlaps)
            Np = padded_size(n, block_n) if padded_size else -(-n // block_n) * block_n

            def pad(a):
                if Np == n:
                    return a
                edge = jnp.broadcast_to(a[:, -1:], (a.shape[0], Np - n))
                return jnp.concatenate([a, edge], axis=1)
            s_pad = [pad(a) for a in s_in]
            r_pad = [a if k == "shared" else pad(a) for a, k in zip(r_in, kinds)]
            seq_out, row_out = run_loop(spec, s_pad, r_pad, T=T, Np=Np, block_n=block_n,
                                        cfg=cfg)
            seq_out = [o[:, :n] for o in seq_out]
            res = []
            for o, k in zip(row_out, out_kinds):
                if k != "block":
                    o = o[:, :n]
                else:   # per-program lane sums, summed over the programs, then the shards
                    if not Np % block_n:   # the padded lanes are not neurons (Mosaic's
                        # overlapping tail instead had the kernel zero the lanes counted twice)
                        o = jnp.where((jnp.arange(Np) < n).reshape(Np // block_n, block_n),
                                      o, 0)
                    o = jnp.sum(o, axis=0, keepdims=True)
                    if psum_axes:
                        o = jax.lax.psum(o, psum_axes)
                res.append(o)
            return tuple(seq_out) + tuple(res)

        # an uneven split cannot be described to the partitioner (JAX 0.10 raises while decoding
        # it): a neuron count that no group of devices divides runs unpartitioned (XLA gathers)
        # (Mosaic's interpreter runs on ordered host callbacks, which custom_partitioning cannot
        # lower: on the CPU that launch stays whole too)
        interpreted_callbacks = cfg.backend == "mosaic" and cfg.interpret
        if not _partitionable(seq_in + row_in) or N % jax.device_count() \
                or interpreted_callbacks:
            out = local(*seq_in, *row_in)
            return list(out[:n_sout]), list(out[n_sout:])
        f = custom_partitioning(lambda *flat: local(*flat))

        def rule_dims(i_in: bool, idx: int, kind: str) -> str:
            tag = f"{'i' if i_in else 'o'}{idx}"
            return f"{tag}l n" if kind != "shared" else f"{tag}l {tag}b"

        in_rules = [rule_dims(True, i, "seq") for i in range(n_seq)] + \
            [rule_dims(True, n_seq + j, k) for j, k in enumerate(kinds)]
        out_rules = [rule_dims(False, i, "seq") for i in range(n_sout)] + \
            [rule_dims(False, n_sout + j, "shared" if k == "block" else "row")
             for j, k in enumerate(out_kinds)]
        # every factor but the neuron axis stays replicated (in order of appearance: Shardy
        # wants the special factors sorted)
        others = list(dict.fromkeys(d for r in in_rules + out_rules for d in r.split()
                                    if d != "n"))
        rule = ", ".join(in_rules) + " -> " + ", ".join(out_rules)

        def shardings(mesh, arg_shapes):
            """The neuron axis as the first per-neuron operand has it; the rest replicated."""
            idx = 0 if n_seq else n_seq + next(j for j, k in enumerate(kinds) if k != "shared")
            n_entry = (tuple(arg_shapes[idx].sharding.spec) + (None, None))[1]
            axes = _axis_names(n_entry)
            if axes and N % math.prod(mesh.shape[a] for a in axes):
                axes, n_entry = (), None     # uneven split: run replicated (correct, gathered)
            row = NamedSharding(mesh, P(None, n_entry))
            rep = NamedSharding(mesh, P(None, None))
            arg_sh = tuple([row] * n_seq + [rep if k == "shared" else row for k in kinds])
            res_sh = tuple([row] * n_sout + [rep if k == "block" else row for k in out_kinds])
            return axes, arg_sh, res_sh

        def partition(mesh, arg_shapes, result_shape):
            axes, arg_sh, res_sh = shardings(mesh, arg_shapes)
            return mesh, functools.partial(local, psum_axes=axes), res_sh, arg_sh

        def infer(mesh, arg_shapes, result_shape):   # GSPMD (jax_use_shardy_partitioner=False)
            return shardings(mesh, arg_shapes)[2]

        f.def_partition(partition=partition, infer_sharding_from_operands=infer,
                        sharding_rule=rule, need_replication_factors=tuple(others))
        out = f(*seq_in, *row_in)
        return list(out[:n_sout]), list(out[n_sout:])
    return launch


__all__ = ["call", "launcher", "out_struct", "varying_axes"]
