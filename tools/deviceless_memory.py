"""Compiled memory of the memory benchmarks' training steps for an H200-like GPU, on a machine
without one (XLA's deviceless compilation; an estimate, not a measurement).

XLA can compile for a CUDA target it is only told about: a PJRT topology made from a
``GpuTargetConfig`` (``tools/h200_target.txtpb``: sm_90, 132 SMs, 141 GB). The buffer
assignment, and so ``memory_analysis()``, is then XLA's own for that target, except where the
compiler would ask the device: nothing is autotuned (GEMM and convolution algorithms take
their defaults) and the cuBLAS workspace is 4 MiB instead of the 32 MiB the H200 gets.
Against the last H200 runs (2026-12-03): the CNN's ReLU twin 1803.0 MiB and Triton LIF network
1687.0 MiB (equal), the SHD-shaped step with ``alias_cotangent`` 78.6 MiB temp (equal),
default 100.0 against 105.0, chunked ``c=16`` 25.6 against 57.6 (the workspace), CNN remat
1408 against 1203 (probably the convolution algorithms). Use it to compare variants of the
code, not as a figure: a figure counts only when measured on the H200
(``benchmarks/RESULTS.md``).

Needs the CUDA build of jaxlib (``pip install "jax[cuda12]"``, the same version as ``jax``);
no GPU, no driver. The Triton and Mosaic kernels are compiled for real (not interpreted):
``snnjax.kernels`` is told it runs on a compute-capability-9 GPU, Triton's lowering is given
that capability.

    python tools/deviceless_memory.py shd --T 256 --variants default,alias,chunk16
    python tools/deviceless_memory.py cnn --T 8 --variants relu,pallas,remat
    python tools/deviceless_memory.py mlp --T 256 --widths 700,256,256,20
    python tools/deviceless_memory.py shd --T 256 --variants default --buffers 10

Variants: ``shd``: ``default`` (``backend='auto'``), ``pallas``, ``mosaic``, ``scan``, ``alias``
(Triton with ``alias_cotangent=True``), ``chunkK`` (``layer.Chunked(net, K)``), ``chunkK+alias``;
``cnn``: the
paths of ``benchmarks/bench_memory.py`` (``relu``, ``pallas``, ``mosaic``, ``remat``,
``remat2``, ``nostore``); ``mlp`` (``Linear -> LIFNode`` layers): ``default`` (each
``Linear(step_mode='m')`` on its own), ``container`` (each in a ``SeqToANNContainer``: spike
inputs kept as int8) and ``nostore`` (compact spike storage off).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Callable

os.environ.setdefault("JAX_PLATFORMS", "cpu")    # the host runs nothing but the compiler

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from snnjax import _spikes, kernels  # noqa: E402

MIB = 2.0 ** 20
TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "h200_target.txtpb")


def target_device(config_path: str = TARGET) -> Any:
    """The one device of a deviceless CUDA topology described by ``config_path``."""
    from jax.experimental import topologies
    with open(config_path) as f:
        config = f.read()
    topology = topologies.get_topology_desc(platform="cuda", topology_name="",
                                            target_config=config, topology="1x1x1")
    return topology.devices[0]


def pretend_compute_capability_9() -> None:
    """Make ``snnjax.kernels`` build compiled GPU kernels (no interpret mode, Mosaic for
    ``'auto'``) and give Triton's lowering the capability it would read from the device."""
    kernels.on_gpu = lambda: True
    kernels._cuda_major = lambda: 9
    from jax._src.pallas.triton import pallas_call_registration as registration

    class _Info:
        compute_capability = "9.0"

    class _GpuInfo:
        @staticmethod
        def get_gpu_info() -> _Info:
            return _Info()

    registration.gpu_info_lib = _GpuInfo


def compile_for(device: Any, fn: Callable, *args: Any, options: dict | None = None) -> Any:
    """``jax.jit(fn)`` compiled for ``device`` on abstract arguments shaped like ``args``."""
    sharding = jax.sharding.SingleDeviceSharding(device)
    abstract = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a), sharding=sharding), args)
    return jax.jit(fn, out_shardings=sharding).trace(*abstract).lower().compile(
        compiler_options=options)


def sizes(compiled: Any) -> dict:
    ma = compiled.memory_analysis()
    row = {k: getattr(ma, f"{k}_size_in_bytes") / MIB for k in ("temp", "argument", "output",
                                                                  "alias")}
    row["total"] = row["temp"] + row["argument"] + row["output"] - row["alias"]
    return row


# --- the workloads: (fn, args, context) per variant --------------------------------------------

def shd(variant: str, T: int, batch: int) -> tuple[Callable, tuple, Any]:
    import bench_memory_shd as bench
    alias = variant.endswith("+alias") or variant == "alias"
    variant = variant.removesuffix("+alias")
    chunk = int(variant[5:]) if variant.startswith("chunk") else None
    backend = "pallas" if alias else {"pallas": "pallas", "mosaic": "mosaic",
                                      "scan": "scan"}.get(variant, "auto")
    step, state = bench.make_step(backend, chunk)
    args = (*state, jnp.zeros((T, batch, bench.N_IN)), jnp.zeros((batch,), jnp.int32))
    ctx = (kernels.default_config(alias_cotangent=True) if alias
           else contextlib.nullcontext())
    return step, args, ctx


def cnn(variant: str, T: int, batch: int) -> tuple[Callable, tuple, Any]:
    import bench_memory as bench
    model = bench.build(variant, T, batch, 32, 128)
    step, state = bench.make_step(model)
    args = (*state, jnp.zeros((batch, 32, 32, 3)), jnp.zeros((batch,), jnp.int32))
    ctx = _spikes.compact_storage(False) if variant == "nostore" else contextlib.nullcontext()
    return step, args, ctx


def mlp(variant: str, T: int, batch: int, widths: list[int]) -> tuple[Callable, tuple, Any]:
    from flax import nnx

    from snnjax import layer, neuron
    rngs, mods = nnx.Rngs(0), []
    for a, b in zip(widths[:-1], widths[1:]):
        linear = (layer.SeqToANNContainer(layer.Linear(a, b, rngs=rngs)) if variant == "container"
                  else layer.Linear(a, b, step_mode="m", rngs=rngs))
        mods += [linear, neuron.LIFNode(step_mode="m")]
    graphdef, params, rest = nnx.split(nnx.List(mods), nnx.Param, ...)

    def grad(params: Any, rest: Any, x: jax.Array) -> Any:
        def loss(params: Any) -> jax.Array:
            h = x
            for f in nnx.merge(graphdef, params, rest, copy=True):
                h = f(h)
            return h.sum(0).mean()
        return jax.grad(loss)(params)

    ctx = _spikes.compact_storage(False) if variant == "nostore" else contextlib.nullcontext()
    return grad, (params, rest, jnp.zeros((T, batch, widths[0]))), ctx


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=("shd", "cnn", "mlp"))
    ap.add_argument("--T", type=int, nargs="+", default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--variants", default=None, help="comma-separated (see the module doc)")
    ap.add_argument("--widths", default="700,256,256,20", help="mlp: layer widths")
    ap.add_argument("--buffers", type=int, default=0,
                    help="print the N largest buffers of each variant (XLA's memory report)")
    ap.add_argument("--target", default=TARGET, help="GpuTargetConfig text proto")
    args = ap.parse_args(argv)
    defaults = {"shd": ([256], 256, "default,alias,chunk16,chunk32"),
                "cnn": ([8], 64, "relu,pallas,remat"),
                "mlp": ([256], 256, "default,container,nostore")}
    Ts, batch, variants = defaults[args.workload]
    Ts, batch = args.T or Ts, args.batch or batch
    device = target_device(args.target)
    pretend_compute_capability_9()
    print(f"# deviceless compile for {device.device_kind} ({args.target}); JAX {jax.__version__}; "
          f"estimates, not H200 measurements")
    rows = []
    for T in Ts:
        for variant in (args.variants or variants).split(","):
            if args.workload == "mlp":
                fn, fargs, ctx = mlp(variant, T, batch, [int(w) for w in args.widths.split(",")])
            else:
                fn, fargs, ctx = {"shd": shd, "cnn": cnn}[args.workload](variant, T, batch)
            with ctx:
                row = {"workload": args.workload, "T": T, "batch": batch, "variant": variant,
                       **sizes(compile_for(device, fn, *fargs))}
                rows.append(row)
                print(f"T={T} {variant}: temp {row['temp']:.1f} MiB, total {row['total']:.1f} "
                      f"MiB", flush=True)
                if args.buffers:
                    import bench_memory_shd
                    for size, shapes in bench_memory_shd.report_buffers(
                            lambda o: compile_for(device, fn, *fargs, options=o), args.buffers,
                            module=f"jit_{fn.__name__}"):
                        print(f"    {size:8.2f}  {shapes[:200]}")
    return rows


if __name__ == "__main__":
    main()
