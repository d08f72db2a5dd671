"""Pallas backend with the Mosaic GPU lowering (``plgpu.kernel`` over GMEM refs; Hopper+).

Lowers a backend-neutral ``LoopSpec`` (``loops.py``), like ``pallas_triton``: one program (a
warpgroup of 128 threads) per ``block_n`` neurons; the time axis a ``lax.fori_loop`` over chunks
(not unrolled), each chunk's steps unrolled; the carry in registers. Rows are 1-D ``(block_n,)``
vectors loaded straight from GMEM (``x_ref[t, pl.ds(start, block_n)]``) -- measured at 3.3-3.7
TB/s on the H200 without SMEM staging (``shared/notes/mosaic-gpu.md``).

Lowering semantics: ``Lane``, with every row in one fixed layout (``_row_layout``: contiguous
``vec_size`` elements per thread, set on each load, carry and iota). The ``Warpgroup``
semantics would infer layouts instead, and its solver grows faster than linearly with the
kernel: on the H200 the first call of LIF's forward+backward at T=64 took 2.19 s with it and
0.87 s with ``Lane`` at the same speed (0.731 / 0.735 ms at T=16, N=8M; CPU cross-lowering:
LIF 2.04 -> 0.31 s, Izhikevich 5.26 -> 0.38 s; ``benchmarks/RESULTS.md``).

Sizes that are not a multiple of the block are handled in the kernel, without a padded copy of
the operands: the last program's block is shifted back to end at ``N`` (``start = N - block_n``)
and so overlaps the previous one. The overlapped neurons are computed twice from the same
inputs with the same instructions, so both programs store identical values; per-program partial
sums (``'block'`` outputs: gradients of shared parameters) zero the overlapped lanes. Only
``N < block_n`` (fewer than 128 neurons) is padded, by the generator (``padded_size``).

Without a GPU it runs in Mosaic GPU's interpret mode (``InterpretGPUParams``; public from JAX
0.11.2, private before). Primitives the lowering lacks are rewritten by the generator
(``rewrites.py``) or make the step fall back (``snnjax.kernels.multi_step``).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from snnjax.kernels.jaxpr_tools import ELEMENTWISE, PARTIAL, REWRITABLE
from snnjax.kernels.loops import Config, LoopSpec, chunk_layout

MIN_BLOCK = 128          # one warpgroup; Mosaic's strided layouts need multiples of 128
# 2 neurons per thread: a chunk's rows stay in registers; LIF T=16 N=8M fwd+bwd 0.72 ms at 256
# vs 0.76 at 512, 0.80 at 1024, 1.13 at 2048 (benchmarks/RESULTS.md, sweep_kernels.py)
MAX_BLOCK = 256

# Registered, but failing the Warpgroup semantics' layout inference (JAX 0.11.2, notes); kept
# rewritten under Lane semantics (not re-measured there):
_BROKEN = frozenset({"erf", "atan2"})


def _plgpu() -> Any:
    from jax.experimental.pallas import mosaic_gpu as plgpu
    return plgpu


def available() -> bool:
    """Whether the installed JAX has the Mosaic GPU Pallas API this backend uses."""
    try:
        plgpu = _plgpu()
        return hasattr(plgpu, "kernel") and _interpret_params_cls() is not None
    except Exception:
        return False


@functools.lru_cache(maxsize=1)
def _interpret_params_cls() -> Any:
    plgpu = _plgpu()
    cls = getattr(plgpu, "InterpretGPUParams", None)
    if cls is None:
        try:  # JAX 0.10.x: not exported yet
            from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams as cls
        except Exception:
            return None
    return cls


@functools.lru_cache(maxsize=1)
def _registered() -> frozenset[str]:
    """Primitive names with a Mosaic GPU lowering rule (Lane semantics, as this backend uses)."""
    try:
        from jax._src.pallas.mosaic_gpu import core as gpu_core
        from jax._src.pallas.mosaic_gpu import lowering as ml
        key = (_plgpu().LoweringSemantics.Lane, gpu_core.PrimitiveSemantics.Warpgroup)
        return frozenset(p.name for p in ml.mosaic_lowering_rules[key])
    except Exception:  # private module moved: assume the set measured on JAX 0.11.2
        return frozenset("""add sub mul div neg abs sign max min integer_pow square rsqrt exp
        exp2 log tanh logistic sin cos round select_n eq ne lt le gt ge and or not xor rem
        clamp convert_element_type broadcast_in_dim""".split())


@functools.lru_cache(maxsize=1)
def supported_primitives() -> frozenset[str]:
    """Elementwise primitives the Mosaic lowering handles (also in interpret mode, so that the
    CPU runs exactly what the GPU would)."""
    return (_registered() & ELEMENTWISE) - _BROKEN | {"stop_gradient"}


@functools.lru_cache(maxsize=1)
def rewrites() -> frozenset[str]:
    """Primitives the generator replaces by ``rewrites.py`` functions for this backend."""
    return (REWRITABLE - supported_primitives()) | (PARTIAL & supported_primitives())


def row_shape(block_n: int) -> tuple[int, ...]:
    return (block_n,)


def default_block(n: int, interpret: bool) -> int:
    """Power of two in ``[128, 256]``, at most ``n``: the largest that still gives 4 programs
    per SM of a 132-SM GPU; interpret mode: up to 4096 (few programs run faster)."""
    b = MAX_BLOCK if not interpret else 4096
    while b > MIN_BLOCK and (b > n or (not interpret and -(-n // b) < 4 * 132)):
        b //= 2
    return b


def padded_size(n: int, block_n: int) -> int:
    """Operand width the kernels run on: ``n`` itself (the tail block overlaps), or one block
    when ``n`` is smaller than a block."""
    return max(n, block_n)


def check_block(block_n: int) -> None:
    if block_n < MIN_BLOCK:
        from snnjax.kernels.jaxpr_tools import KernelLoweringError
        raise KernelLoweringError(f"the Mosaic GPU backend needs block_n >= {MIN_BLOCK} "
                                  f"(a multiple of one warpgroup), got {block_n}")


def _params(cfg: Config) -> dict:
    plgpu = _plgpu()
    kw: dict = {}
    if cfg.interpret:
        kw["interpret"] = _interpret_params_cls()()
    sem = getattr(plgpu, "LoweringSemantics", None)
    if sem is not None:
        try:
            kw["compiler_params"] = plgpu.CompilerParams(lowering_semantics=sem.Lane)
        except TypeError:  # a JAX without the field: Lane is its only semantics
            pass
    return kw


def _row_layout(block_n: int) -> Any:
    """The one layout of every row: ``vec_size`` contiguous elements per thread (up to 4, a
    16-byte fp32 access), the same for every dtype, so rows of mixed dtypes combine."""
    plgpu = _plgpu()
    return plgpu.Layout.WG_STRIDED((block_n,), vec_size=min(block_n // 128, 4))


def _fixed(v: jax.Array, block_n: int, interpret: bool) -> jax.Array:
    """``v`` in the row layout (right after a load or iota: the load itself uses it). A
    lowering hint with no effect on values; the interpreter of JAX 0.10 has no rule for it."""
    return v if interpret else _plgpu().layout_cast(v, _row_layout(block_n))


class _RefIO:
    """Row access for ``LoopSpec.chunk``: ``(block_n,)`` rows at this program's offset."""

    def __init__(self, seq_refs: Sequence[Any], out_refs: Sequence[Any], cdt: Any, start: Any,
                 block_n: int, interpret: bool):
        self.seq_refs, self.out_refs, self.cdt = seq_refs, out_refs, cdt
        self.cols = pl.ds(start, block_n)
        self.block_n, self.interpret = block_n, interpret

    def row(self, ref: Any, index: Any, cols: Any = None) -> jax.Array:
        """Row ``index`` of ``ref`` (this program's columns, or ``cols``) in the row layout,
        cast to the compute dtype."""
        v = ref[index, self.cols if cols is None else cols]
        return _fixed(v, self.block_n, self.interpret).astype(self.cdt)

    def load(self, i: int, index: Any) -> jax.Array:
        return self.row(self.seq_refs[i], index)

    def store(self, j: int, index: Any, value: jax.Array) -> None:
        ref = self.out_refs[j]
        ref[index, self.cols] = value.astype(ref.dtype)


def run_loop(spec: LoopSpec, seq_in: Sequence[jax.Array], row_in: Sequence[jax.Array], *,
             T: int, Np: int, block_n: int, cfg: Config) -> tuple[list, list]:
    """Run ``spec`` over ``T`` steps. ``seq_in`` ``[T or n_chunks, Np]``; ``row_in`` ``[1, Np]``
    or shared ``[1, block_n]`` (``Np >= block_n``, any size). Returns ``(seq_out, row_out)``
    (``[1, Np]`` rows, or ``[n_programs, block_n]`` per-program partial sums)."""
    check_block(block_n)
    plgpu = _plgpu()
    nb = -(-Np // block_n)
    B = block_n
    K = spec.chunk_len
    r, n_full, n_chunks = chunk_layout(T, K)
    cdt = spec.compute_dtype
    n_seq, n_row, n_sout = len(seq_in), len(row_in), len(spec.seq_out)
    out_type = [jax.ShapeDtypeStruct((T if per_step else n_chunks, Np), d)
                for d, per_step in spec.seq_out]
    out_type += [jax.ShapeDtypeStruct((nb, B) if kind == "block" else (1, Np), d)
                 for d, kind in spec.row_out]
    row_kinds = [kind for _, kind in spec.row_out]

    def body(*refs):
        seq_refs = refs[:n_seq]
        row_refs = refs[n_seq:n_seq + n_row]
        sout_refs = refs[n_seq + n_row:n_seq + n_row + n_sout]
        rout_refs = refs[n_seq + n_row + n_sout:]
        b = jax.lax.axis_index("b")
        start = jnp.minimum(b * B, Np - B)     # the tail block overlaps its predecessor
        io = _RefIO(seq_refs, sout_refs, cdt, start, B, cfg.interpret)
        rows = [io.row(ref, 0, pl.ds(0, B) if kind == "shared" else None)
                for ref, kind in zip(row_refs, spec.row_in_kinds)]
        first = 1 if r else 0

        def conform(values):   # a loop carry keeps one layout (zeros start as a splat)
            return tuple(_fixed(v.astype(cdt), B, cfg.interpret) for v in values)

        def run_chunk(carry, t0, c, n):
            return conform(spec.chunk(rows, list(carry), io, t0, c, n))

        def full(i, carry):
            if spec.reverse:
                i = n_full - 1 - i
            return run_chunk(carry, r + i * K, first + i, K)

        carry = conform(spec.init(rows))
        if r and not spec.reverse:
            carry = run_chunk(carry, 0, 0, r)
        if n_full:
            carry = jax.lax.fori_loop(0, n_full, full, carry)
        if r and spec.reverse:
            carry = run_chunk(carry, 0, 0, r)
        finals = spec.final(rows, list(carry))
        if "block" in row_kinds and Np % B:
            # lanes below b * B belong to the previous program: out of this partial sum
            lane = _fixed(jax.lax.broadcasted_iota(jnp.int32, (B,), 0), B, cfg.interpret)
            own = lane >= b * B - start
        for ref, o, kind in zip(rout_refs, finals, row_kinds):
            if kind == "block":
                if Np % B:
                    o = jnp.where(own, o, jnp.zeros_like(o))
                ref[b, pl.ds(0, B)] = o.astype(ref.dtype)
            else:
                ref[0, io.cols] = o.astype(ref.dtype)

    body.__name__ = "snnjax_bwd" if spec.reverse else "snnjax_fwd"
    kernel = plgpu.kernel(body, out_type=tuple(out_type), grid=(nb,), grid_names=("b",),
                          **_params(cfg))
    out = list(kernel(*seq_in, *row_in))
    return out[:n_sout], out[n_sout:]
