"""Memory and step time of the SHD-shaped training step (issue 15), per backend and memory option.

The workload (the protocol of a JAX peer): 700 inputs, ``Linear(700, 128)`` -> ``LIFNode``
(hidden, ``step_mode='m'``) -> ``Linear(128, 20)`` -> ``LIFNode`` (output), batch 256,
T = 256 and 1024, fp32, Adam (optax, lr 1e-3), cross-entropy of the output spike counts
``sum_t s[t]`` against integer labels; every step starts from fresh neuron states.

Measured: XLA's ``memory_analysis()`` of ``jax.jit(step).lower(...).compile()`` (no buffer
donation): temp (the SHD targets count temp alone: the input ``[T, B, 700]`` dominates the
arguments), argument, output, alias and ``temp + argument + output - alias``; with ``--time``
the step time, median of ``--reps`` (>= 20) synchronised calls after 3 warm-up calls (and of
``--reps`` samples of 10 back-to-back calls: device time, dispatch hidden), and the
loss of the first step (the same for every variant up to fp32 rounding: same data, same initial
parameters). Variants: ``default`` (no option: ``backend='auto'``, kernels on a GPU, ``lax.scan``
on a CPU), ``scan``, ``pallas`` / ``mosaic`` (GPU only), ``pallas alias_cotangent`` (GPU only:
``kernels.default_config(alias_cotangent=True)``, the backward's input gradient written into
the spike cotangent's buffer), and ``chunked c=K`` (``layer.Chunked(net, chunk=K)``, default
backend) for each ``--chunks`` size (with ``--unrolled`` also ``unroll=True``).

    python benchmarks/bench_memory_shd.py --time --json shd.json       # T = 256, 1024
    python benchmarks/bench_memory_shd.py --smoke                      # tiny CPU run (< 30 s)
    python benchmarks/bench_memory_shd.py --T 256 --buffers 12         # what dominates temp

``--buffers N`` prints the N largest temp buffers (XLA's memory-usage report of the buffer
assignment, one compile with ``xla_dump_to``) of the default and chunked steps at the first
``--T``.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import sys
import tempfile
import time
from typing import Any

import numpy as np

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from snnjax import kernels, layer, neuron  # noqa: E402

MIB = 2.0 ** 20
N_IN, N_HIDDEN, N_OUT = 700, 128, 20


GAIN = 8.0   # weights U(+-GAIN / sqrt(fan_in)): with PyTorch's default (GAIN = 1) nothing fires


def _uniform(fan_in: int):
    bound = GAIN / np.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                    bound)


class SHDNet(nnx.Module):
    """``[T, B, 700] -> Linear -> LIF -> Linear -> LIF -> [T, B, 20]`` spikes (LIF: tau 2,
    threshold 1, hard reset to 0, sigmoid surrogate; about 3% of the hidden and output neurons
    fire per step on the benchmark's input)."""

    def __init__(self, backend: str, rngs: nnx.Rngs):
        self.fc1 = layer.Linear(N_IN, N_HIDDEN, step_mode="m", kernel_init=_uniform(N_IN),
                                rngs=rngs)
        self.sn1 = neuron.LIFNode(step_mode="m", backend=backend)
        self.fc2 = layer.Linear(N_HIDDEN, N_OUT, step_mode="m", kernel_init=_uniform(N_HIDDEN),
                                rngs=rngs)
        self.sn2 = neuron.LIFNode(step_mode="m", backend=backend)

    def __call__(self, x_seq: jax.Array) -> jax.Array:
        return self.sn2(self.fc2(self.sn1(self.fc1(x_seq))))


Variant = tuple[str, str, "int | None", "int | bool"]


def variants(chunks: list[int], on_gpu: bool, unrolled: bool = False,
             scan: bool = True) -> list[Variant]:
    """``(name, backend, chunk, unroll)`` of every measured configuration."""
    out: list[Variant] = [("default", "auto", None, 1)]
    out += [("scan", "scan", None, 1)] if on_gpu and scan else []   # on a CPU: the default
    out += [("pallas", "pallas", None, 1), ("pallas alias_cotangent", "pallas", None, 1),
            ("mosaic", "mosaic", None, 1)] if on_gpu else []
    for c in chunks:
        out.append((f"chunked c={c}", "auto", c, 1))
        if unrolled:
            out.append((f"chunked c={c} unrolled", "auto", c, True))
    return out


def make_step(backend: str, chunk: int | None, lr: float = 1e-3, unroll: int | bool = 1):
    """The training step ``(params, opt_state, rest, x, y) -> (params, opt_state, loss)`` and
    its initial ``(params, opt_state, rest)``."""
    net = SHDNet(backend, nnx.Rngs(0))
    model = net if chunk is None else layer.Chunked(net, chunk, unroll=unroll)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(lr)

    def loss_fn(p: Any, rest: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        m = nnx.merge(graphdef, p, rest, copy=True)   # fresh neuron states every step
        counts = m(x).sum(0)                           # [B, 20] spike counts
        return optax.softmax_cross_entropy_with_integer_labels(counts, y).mean()

    def step(params: Any, opt_state: Any, rest: Any, x: jax.Array, y: jax.Array):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, (params, tx.init(params), rest)


def data(T: int, batch: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """Binary input spikes (rate 0.05) ``[T, B, 700]`` and labels ``[B]``."""
    kx, ky = jax.random.split(jax.random.key(seed))
    x = jax.random.bernoulli(kx, 0.05, (T, batch, N_IN)).astype(jnp.float32)
    return x, jax.random.randint(ky, (batch,), 0, N_OUT)


def compile_step(step, state, T: int, batch: int, options: dict | None = None):
    x = jax.ShapeDtypeStruct((T, batch, N_IN), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    return jax.jit(step).lower(*state, x, y).compile(compiler_options=options)


def measure(name: str, backend: str, chunk: int | None, T: int, batch: int, *, timed: bool,
            reps: int, unroll: int | bool = 1) -> dict:
    step, state = make_step(backend, chunk, unroll=unroll)
    # the kernels' memory option (a trace-time setting: it applies to what compiles inside)
    option = (kernels.default_config(alias_cotangent=True) if name.endswith("alias_cotangent")
              else contextlib.nullcontext())
    with option:
        compiled = compile_step(step, state, T, batch)
    ma = compiled.memory_analysis()
    row = {"T": T, "batch": batch, "variant": name, "backend": backend, "chunk": chunk,
           "unroll": unroll,
           "temp_mib": ma.temp_size_in_bytes / MIB,
           "argument_mib": ma.argument_size_in_bytes / MIB,
           "output_mib": ma.output_size_in_bytes / MIB,
           "alias_mib": ma.alias_size_in_bytes / MIB}
    row["total_mib"] = (row["temp_mib"] + row["argument_mib"] + row["output_mib"]
                        - row["alias_mib"])
    if timed:
        x, y = data(T, batch)
        loss = compiled(*state, x, y)[2]
        row["loss"] = float(loss)
        for _ in range(3):
            jax.block_until_ready(compiled(*state, x, y))
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*state, x, y))
            times.append((time.perf_counter() - t0) * 1e3)
        row["step_ms"] = float(np.median(times))
        times = []   # 10 back-to-back calls per sample: device time, host dispatch hidden
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(10):
                out = compiled(*state, x, y)
            jax.block_until_ready(out)
            times.append((time.perf_counter() - t0) * 1e2)
        row["step_ms_batched"] = float(np.median(times))
        del x
    return row


_REPORT_LINE = re.compile(r"^\s*[\d.]+\w*B\(\s*\d+%\);\s*([\d.]+)(\w*B);\s*\d+;\s*\d+;\s*(.*)$")
_UNITS = {"B": 1.0, "KiB": 2.0 ** 10, "MiB": MIB, "GiB": 2.0 ** 30}


def report_buffers(compile_with: Any, top: int, module: str = "jit_step") -> list[tuple[float, str]]:
    """The ``top`` largest buffers (MiB, shapes sharing the slot) of XLA's memory-usage report
    of a buffer assignment: ``compile_with(options)`` compiles with the given compiler options
    (``xla_dump_to`` is set); parameters are included."""
    with tempfile.TemporaryDirectory() as tmp:
        compile_with({"xla_dump_to": tmp})
        reports = [p for p in glob.glob(os.path.join(tmp, "*memory-usage-report.txt"))
                   if module in os.path.basename(p)]
        if not reports:
            return []
        with open(max(reports, key=os.path.getmtime)) as f:
            lines = f.read().splitlines()
    found = []
    for line in lines:
        m = _REPORT_LINE.match(line)
        if m:
            found.append((float(m.group(1)) * _UNITS[m.group(2)] / MIB, m.group(3).strip()))
    return sorted(found, key=lambda t: -t[0])[:top]


def largest_buffers(T: int, batch: int, top: int, backend: str = "auto",
                    chunk: int | None = None, unroll: int | bool = 1) -> list[tuple[float, str]]:
    """:func:`report_buffers` of the SHD step (the input ``[T, B, 700]`` is one buffer)."""
    step, state = make_step(backend, chunk, unroll=unroll)
    return report_buffers(lambda options: compile_step(step, state, T, batch, options), top)


def table(rows: list[dict]) -> str:
    timed = any("step_ms" in r for r in rows)
    head = ["T", "variant", "temp MiB", "argument MiB", "output MiB", "alias MiB",
            "temp+arg+out-alias MiB"] + (["step ms", "step ms (10 back-to-back)",
                                          "loss (1st step)"] if timed else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["T"]), r["variant"]] + [f"{r[k]:.1f}" for k in (
            "temp_mib", "argument_mib", "output_mib", "alias_mib", "total_mib")]
        if timed:
            cells += [f"{r[k]:.2f}" if k in r else "-" for k in ("step_ms", "step_ms_batched")]
            cells += [f"{r['loss']:.6f}" if "loss" in r else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", default="256,1024", help="comma-separated sequence lengths")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--chunks", default="8,16,32,64", help="chunk sizes of the chunked option")
    p.add_argument("--time", action="store_true", help="also time the step (median of --reps)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--smoke", action="store_true", help="tiny CPU run: batch 8, T=32, chunk 12 (a remainder chunk)")
    p.add_argument("--unrolled", action="store_true",
                   help="also each chunk size with the loop over chunks unrolled (unroll=True)")
    p.add_argument("--no-scan", action="store_true", help="skip the scan row on a GPU (slow)")
    p.add_argument("--only", default=None,
                   help="comma-separated variant names to run (e.g. 'default,chunked c=16')")
    p.add_argument("--buffers", type=int, default=0, help="print the N largest buffers of the "
                   "default and the chunked steps at the first T")
    p.add_argument("--json", default=None, help="write the rows to this file")
    args = p.parse_args(argv)
    if args.reps < 20:
        p.error(f"--reps must be >= 20 (the protocol: median of at least 20 calls), got {args.reps}")
    return args


def main(args: argparse.Namespace) -> list[dict]:
    if args.smoke:
        args.T, args.batch, args.chunks, args.time = "32", 8, "12", True
    Ts = [int(t) for t in str(args.T).split(",")]
    chunks = [int(c) for c in str(args.chunks).split(",") if c]
    on_gpu = jax.default_backend() == "gpu"
    print(f"# SHD-shaped step: 700-128-20 LIF, batch {args.batch}, fp32, Adam; device "
          f"{jax.devices()[0].device_kind} ({jax.default_backend()}); JAX {jax.__version__}")
    rows = []
    for T in Ts:
        for name, backend, chunk, unroll in variants(chunks, on_gpu, args.unrolled,
                                                     not args.no_scan):
            if args.only and name not in args.only.split(","):
                continue
            row = measure(name, backend, chunk, T, args.batch, timed=args.time, reps=args.reps,
                          unroll=unroll)
            rows.append(row)
            print(f"T={T} {name}: temp {row['temp_mib']:.1f} MiB"
                  + (f", {row['step_ms']:.2f} ms ({row['step_ms_batched']:.2f} ms back-to-back)"
                     if "step_ms" in row else ""), flush=True)
    print()
    print(table(rows))
    if args.buffers:
        T = Ts[0]
        for name, backend, chunk, unroll in variants(chunks, False, args.unrolled):
            print(f"\nLargest buffers of the {name} step at T={T} (MiB; shapes sharing one "
                  f"slot):")
            for size, shapes in largest_buffers(T, args.batch, args.buffers, backend, chunk,
                                                unroll):
                print(f"  {size:8.2f}  {shapes}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "jax": jax.__version__,
                       "batch": args.batch, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main(parse_args())
