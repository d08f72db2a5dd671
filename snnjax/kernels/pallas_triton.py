"""Pallas backend with the Triton GPU lowering (``pl.pallas_call`` default on GPU in JAX 0.10/0.11).

Lowers a backend-neutral ``LoopSpec`` (see ``generator``): one program per ``block_n`` neurons,
the whole time loop inside the program (``lax.fori_loop``, not unrolled), the carry in registers.
Runs with ``interpret=True`` on machines without a GPU.

(Pallas-Triton is deprecated since JAX 0.11; a Mosaic GPU backend would be a sibling module
exposing the same ``run_loop`` / ``supported_primitives``.)
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from snnjax.kernels.generator import Config, LoopSpec


@functools.lru_cache(maxsize=1)
def supported_primitives() -> frozenset[str] | None:
    """Names of primitives with a Pallas-Triton lowering rule (None if it cannot be read)."""
    try:
        from jax._src.pallas.triton import lowering as tl
        return frozenset(p.name for p in tl.triton_lowering_rules) | {"stop_gradient"}
    except Exception:  # private module moved: do not restrict beyond the generic whitelist
        return None


def _compiler_params(cfg: Config) -> Any:
    if cfg.interpret or (cfg.num_warps is None and cfg.num_stages is None):
        return None
    try:
        from jax.experimental.pallas import triton as plt
        kw = {}
        if cfg.num_warps is not None:
            kw["num_warps"] = cfg.num_warps
        if cfg.num_stages is not None:
            kw["num_stages"] = cfg.num_stages
        return plt.CompilerParams(**kw)
    except Exception:
        return None


def run_loop(spec: LoopSpec, seq_in: Sequence[jax.Array], row_in: Sequence[jax.Array], *,
             T: int, Np: int, block_n: int, cfg: Config) -> tuple[list, list]:
    """Run ``spec`` over ``T`` steps. ``seq_in`` ``[T, Np]``; ``row_in`` ``[1, Np]`` or shared
    ``[1, block_n]``. Returns ``(seq_out [T, Np] each, row_out [1, Np] or [Np//block_n, block_n])``.
    """
    nb = Np // block_n
    cdt = spec.compute_dtype
    n_seq, n_row = len(seq_in), len(row_in)
    n_sout = len(spec.seq_out_dtypes)
    seq_spec = pl.BlockSpec((T, block_n), lambda j: (0, j))
    row_spec = pl.BlockSpec((1, block_n), lambda j: (0, j))
    shared_spec = pl.BlockSpec((1, block_n), lambda j: (0, 0))
    block_spec = pl.BlockSpec((1, block_n), lambda j: (j, 0))
    in_specs = [seq_spec] * n_seq + [shared_spec if k == "shared" else row_spec
                                     for k in spec.row_in_kinds]
    out_shape = [jax.ShapeDtypeStruct((T, Np), d) for d in spec.seq_out_dtypes]
    out_specs = [seq_spec] * n_sout
    for d, kind in spec.row_out:
        if kind == "block":
            out_shape.append(jax.ShapeDtypeStruct((nb, block_n), d))
            out_specs.append(block_spec)
        else:
            out_shape.append(jax.ShapeDtypeStruct((1, Np), d))
            out_specs.append(row_spec)

    def kernel(*refs):
        seq_refs = refs[:n_seq]
        row_refs = refs[n_seq:n_seq + n_row]
        sout_refs = refs[n_seq + n_row:n_seq + n_row + n_sout]
        rout_refs = refs[n_seq + n_row + n_sout:]
        rows = [r[...].astype(cdt) for r in row_refs]

        def load(t):
            return [r[pl.ds(t, 1), :].astype(cdt) for r in seq_refs]

        def tstep(k):
            return (T - 1 - k) if spec.reverse else k

        def advance(t, carry, seq):
            carry, outs = spec.body(rows, list(carry), seq)
            for r, o in zip(sout_refs, outs):
                r[pl.ds(t, 1), :] = o.astype(r.dtype)
            return tuple(c.astype(cdt) for c in carry)

        carry0 = tuple(c.astype(cdt) for c in spec.init(rows))
        if cfg.prefetch and T > 1:
            # register double-buffering: issue step t+1's loads before step t's math/stores
            n_c = len(carry0)

            def it(k, c):
                t = tstep(k)
                nxt = load(tstep(jnp.minimum(k + 1, T - 1)))
                return advance(t, c[:n_c], list(c[n_c:])) + tuple(nxt)
            carry = jax.lax.fori_loop(0, T, it, carry0 + tuple(load(tstep(0))))[:n_c]
        else:
            carry = jax.lax.fori_loop(0, T, lambda k, c: advance(tstep(k), c, load(tstep(k))),
                                      carry0)
        for r, o in zip(rout_refs, spec.final(rows, list(carry))):
            r[...] = o.astype(r.dtype)

    out = pl.pallas_call(
        kernel, out_shape=out_shape, grid=(nb,), in_specs=in_specs, out_specs=out_specs,
        interpret=cfg.interpret, compiler_params=_compiler_params(cfg),
        name="snnjax_bwd" if spec.reverse else "snnjax_fwd",
    )(*seq_in, *row_in)
    out = list(out)
    return out[:n_sout], out[n_sout:]
