"""Pallas backend with the Triton GPU lowering (``pl.pallas_call`` default on GPU in JAX 0.10/0.11).

Lowers a backend-neutral ``LoopSpec`` (``loops.py``): one program per ``block_n`` neurons; the
time axis is a ``lax.fori_loop`` over chunks (not unrolled), each chunk's steps unrolled; the
carry lives in registers. Runs with ``interpret=True`` on machines without a GPU.

(Pallas-Triton is deprecated since JAX 0.11; ``pallas_mosaic`` is the sibling Mosaic GPU backend,
exposing the same ``run_loop`` / ``supported_primitives`` / ``rewrites`` / ``row_shape`` /
``default_block`` / ``padded_size``.) Sizes that are not a multiple of the block are padded by
the generator (``padded_size``).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
from jax.experimental import pallas as pl

from snnjax.kernels.jaxpr_tools import ELEMENTWISE, REWRITABLE, TRITON_REWRITES
from snnjax.kernels.loops import Config, LoopSpec, chunk_layout
from snnjax.kernels.sharding import out_struct


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the installed JAX still has Pallas' Triton lowering."""
    try:
        from jax._src.pallas.triton import lowering  # noqa: F401
        return True
    except Exception:
        return False


def rewrites() -> frozenset[str]:
    """Primitives the generator replaces for this backend: ``round`` (no Triton rule), NaN-safe
    ``max`` / ``min`` / ``clamp``, and the rewritable ones the installed lowering lacks
    (``erf`` / ``erfc``; ``polynomial`` / ``one_minus_square`` on JAX 0.12)."""
    supported = supported_primitives()
    # as for Mosaic: rewritten unless lowered here and on the generator's elementwise list
    missing = REWRITABLE - (supported & ELEMENTWISE) if supported is not None else frozenset()
    return TRITON_REWRITES | missing


def row_shape(block_n: int) -> tuple[int, ...]:
    return (1, block_n)


def default_block(n: int, interpret: bool) -> int:
    """Largest power of two <= 256 that still gives >= 4 programs per SM of a 132-SM GPU
    (floor 128); for tiny ``n`` the next power of two (>= 16). Interpret mode: one or few blocks.
    (256 neurons and 4 warps: two per thread, so a chunk's rows fit in registers; measured best
    on the H200, ``benchmarks/RESULTS.md``.)"""
    if interpret:
        return min(max(16, _next_pow2(n)), 4096)
    b = 256
    while b > 128 and -(-n // b) < 4 * 132:
        b //= 2
    return min(b, max(16, _next_pow2(n)))


def padded_size(n: int, block_n: int) -> int:
    """Operand width: ``n`` rounded up to a whole number of blocks (the generator pads)."""
    return -(-n // block_n) * block_n


def check_block(block_n: int) -> None:
    """Every power of two is a valid Triton block."""


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


class _RefIO:
    """Row access for ``LoopSpec.chunk``: loads cast to the compute dtype, stores to the ref's."""

    def __init__(self, seq_refs: Sequence[Any], out_refs: Sequence[Any], cdt: Any):
        self.seq_refs, self.out_refs, self.cdt = seq_refs, out_refs, cdt

    def load(self, i: int, index: Any) -> jax.Array:
        return self.seq_refs[i][pl.ds(index, 1), :].astype(self.cdt)

    def store(self, j: int, index: Any, value: jax.Array) -> None:
        ref = self.out_refs[j]
        ref[pl.ds(index, 1), :] = value.astype(ref.dtype)


def run_loop(spec: LoopSpec, seq_in: Sequence[jax.Array], row_in: Sequence[jax.Array], *,
             T: int, Np: int, block_n: int, cfg: Config) -> tuple[list, list]:
    """Run ``spec`` over ``T`` steps. ``seq_in`` ``[T or n_chunks, Np]``; ``row_in`` ``[1, Np]``
    or shared ``[1, block_n]``. Returns ``(seq_out, row_out)`` (``[1, Np]`` or
    ``[Np // block_n, block_n]`` rows)."""
    nb = Np // block_n
    K = spec.chunk_len
    r, n_full, n_chunks = chunk_layout(T, K)
    cdt = spec.compute_dtype
    n_seq, n_row, n_sout = len(seq_in), len(row_in), len(spec.seq_out)

    def col(length):
        return pl.BlockSpec((length, block_n), lambda j: (0, j))

    row_spec = pl.BlockSpec((1, block_n), lambda j: (0, j))
    shared_spec = pl.BlockSpec((1, block_n), lambda j: (0, 0))
    block_spec = pl.BlockSpec((1, block_n), lambda j: (j, 0))
    in_specs = [col(T if per_step else n_chunks) for per_step in spec.seq_in_per_step] \
        + [shared_spec if k == "shared" else row_spec for k in spec.row_in_kinds]
    operands = list(seq_in) + list(row_in)   # outputs vary over the manual axes they do
    out_shape = [out_struct((T if per_step else n_chunks, Np), d, operands)
                 for d, per_step in spec.seq_out]
    out_specs = [col(T if per_step else n_chunks) for _, per_step in spec.seq_out]
    for d, kind in spec.row_out:
        if kind == "block":
            out_shape.append(out_struct((nb, block_n), d, operands))
            out_specs.append(block_spec)
        else:
            out_shape.append(out_struct((1, Np), d, operands))
            out_specs.append(row_spec)

    def kernel(*refs):
        seq_refs = refs[:n_seq]
        row_refs = refs[n_seq:n_seq + n_row]
        sout_refs = refs[n_seq + n_row:n_seq + n_row + n_sout]
        rout_refs = refs[n_seq + n_row + n_sout:]
        io = _RefIO(seq_refs, sout_refs, cdt)
        rows = [ref[...].astype(cdt) for ref in row_refs]
        first = 1 if r else 0  # index of the first full chunk

        def run_chunk(carry, t0, c, n):
            return tuple(v.astype(cdt) for v in spec.chunk(rows, list(carry), io, t0, c, n))

        def full(i, carry):
            if spec.reverse:
                i = n_full - 1 - i
            return run_chunk(carry, r + i * K, first + i, K)

        carry = tuple(v.astype(cdt) for v in spec.init(rows))
        if r and not spec.reverse:
            carry = run_chunk(carry, 0, 0, r)
        if n_full:
            carry = jax.lax.fori_loop(0, n_full, full, carry)
        if r and spec.reverse:
            carry = run_chunk(carry, 0, 0, r)
        for ref, o in zip(rout_refs, spec.final(rows, list(carry))):
            ref[...] = o.astype(ref.dtype)

    # a dead cotangent's buffer becomes the input gradient (XLA copies it if it is still live
    # or an argument of the jitted function)
    aliases = {i: j for i, j in spec.aliases if cfg.alias_cotangent
               and seq_in[i].shape == out_shape[j].shape and seq_in[i].dtype == out_shape[j].dtype}
    out = pl.pallas_call(
        kernel, out_shape=out_shape, grid=(nb,), in_specs=in_specs, out_specs=out_specs,
        input_output_aliases=aliases,
        interpret=cfg.interpret, compiler_params=_compiler_params(cfg),
        name="snnjax_bwd" if spec.reverse else "snnjax_fwd",
    )(*seq_in, *row_in)
    out = list(out)
    return out[:n_sout], out[n_sout:]
