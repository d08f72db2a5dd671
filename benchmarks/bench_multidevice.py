"""Multi-device scaling: the data-parallel spiking CNN and a large LIF layer on 1, 2, ... N devices.

On a multi-GPU machine (every visible GPU; NCCL NVLink multicast off, see below):

    python benchmarks/bench_multidevice.py [--devices 8] [--steps 100] [--out scaling.json]

Smoke test on a CPU with virtual devices (tiny shapes, a few steps; the timings mean nothing on
a machine with fewer cores than devices):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/bench_multidevice.py --smoke

Workloads (both with the batch axis sharded over a 1-D mesh ``('data',)``, parameters
replicated, plain ``jax.jit`` with ``NamedSharding`` inputs):

* ``cnn``: one training step (forward, backward, Adam) of ``examples/data_parallel.SpikingCNN``;
* ``lif``: forward + backward (gradient of ``sum(spikes * g)`` w.r.t. the input) of one
  ``LIFNode`` layer on ``x[T, B, F]``.

Scaling: weak (fixed per-device batch: global batch ``b * n``; efficiency ``t_1 / t_n``) and
strong (fixed global batch; efficiency ``t_1 / (n t_n)``). Each point: median and spread
(10th-90th percentile) of ``--steps`` (>= 50) synchronised steps after ``--warmup`` steps.

Before timing, the compiled HLO of each sharded LIF gradient is checked: no collective at all
(the input gradient needs none) and no unpartitioned kernel call left (``CustomSPMDPartitioning``
lowered per shard); a failure is printed as ``HLO CHECK FAILED`` and the script exits non-zero.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

# NVLink multicast (NVLS) stays off for NCCL on the lent multi-GPU machines (device notes)
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]
from snnjax import functional, neuron  # noqa: E402

COLLECTIVES = ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter")


def device_counts(n_max: int) -> list[int]:
    out, n = [], 1
    while n < n_max:
        out.append(n)
        n *= 2
    return out + [n_max]


def mesh_of(n: int) -> jax.sharding.Mesh:
    return jax.sharding.Mesh(np.array(jax.devices()[:n]), ("data",))


def time_steps(fn, *, steps: int, warmup: int) -> tuple[float, float, float]:
    """(median, p10, p90) in ms of ``fn()`` (synchronised each step), after warm-up."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts)), float(np.percentile(ts, 10)), float(np.percentile(ts, 90))


def lif_setup(n: int, batch: int, args) -> tuple:
    """Compiled forward+backward of one LIF layer on ``n`` devices; its HLO checked."""
    mesh = mesh_of(n)
    sh = NamedSharding(mesh, P(None, "data"))
    lif = neuron.LIFNode(tau=2.0, backend=args.backend)
    key = jax.random.PRNGKey(0)
    x = jax.device_put(jax.random.normal(key, (args.T, batch, args.features)) + 0.5, sh)
    g = jax.device_put(jax.random.normal(key, (args.T, batch, args.features)), sh)

    def loss(x, g):
        return jnp.sum(lif.multi_step(lif.init_state(x[0]), x)[1] * g)
    fn = jax.jit(jax.grad(loss))
    text = fn.lower(x, g).compile().as_text()
    problems = []
    if n > 1:
        found = {c: len(re.findall(rf"\b{c}(-start)?\(", text)) for c in COLLECTIVES}
        if any(found.values()):
            problems.append(f"collectives in the input gradient: {found}")
        if "CustomSPMDPartitioning" in text:
            problems.append("a kernel launch was left unpartitioned")
        flat = batch * args.features   # a kernel operand of the global flat size: not per shard
        # (compiled kernels only: interpret mode's block is sized from the global N, so a
        # shard's padded rows can have the global length)
        if jax.default_backend() == "gpu" and re.search(rf"\[(1|{args.T}),{flat}\]", text):
            problems.append(f"an operand of the global flat shape [*, {flat}] in the program")
    return (lambda: fn(x, g)), problems


def cnn_setup(n: int, batch: int, args) -> tuple:
    """One compiled data-parallel training step of the spiking CNN on ``n`` devices."""
    import optax
    from flax import nnx
    import data_parallel as dp
    mesh = mesh_of(n)
    model = dp.SpikingCNN(T=args.T, channels=args.channels, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    dp.place((model, opt), mesh, False)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int32)
    xb, yb = jax.device_put((x, y), NamedSharding(mesh, P("data")))
    step = dp.make_train_step()
    step(model, opt, xb, yb)          # the neuron states take their batch shapes
    return (lambda: step(model, opt, xb, yb)), []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=None, help="largest device count (default all)")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per point (>= 50)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--workloads", default="cnn,lif")
    ap.add_argument("--backend", default="auto", choices=("auto", "scan", "pallas"),
                    help="neuron backend of the LIF layer")
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--features", type=int, default=65536, help="LIF layer width F")
    ap.add_argument("--lif-batch", type=int, default=32, help="LIF per-device batch (weak)")
    ap.add_argument("--cnn-batch", type=int, default=256, help="CNN per-device batch (weak)")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, 5 steps (CPU smoke test)")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.T, args.features = 5, 1, 4, 256
        args.lif_batch, args.cnn_batch, args.channels = 4, 8, 4
    elif args.steps < 50:
        ap.error("--steps must be >= 50 (use --smoke for a quick run)")
    n_max = args.devices or jax.device_count()
    counts = device_counts(n_max)
    setups = {"lif": (lif_setup, args.lif_batch), "cnn": (cnn_setup, args.cnn_batch)}
    print(f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"device counts {counts}, {args.steps} steps after {args.warmup}, "
          f"NCCL_NVLS_ENABLE={os.environ.get('NCCL_NVLS_ENABLE')}")
    print(f"{'workload':8} {'scaling':7} {'n':>3} {'batch':>6} {'median ms':>10} "
          f"{'p10-p90 ms':>17} {'efficiency':>10}")
    results, failed = [], False
    for name in args.workloads.split(","):
        setup, per_device = setups[name]
        for scaling in ("weak", "strong"):
            t1 = None
            for n in counts:
                batch = per_device * n if scaling == "weak" else per_device * n_max
                fn, problems = setup(n, batch, args)
                for p in problems:
                    failed = True
                    print(f"HLO CHECK FAILED ({name}, n={n}): {p}")
                med, lo, hi = time_steps(fn, steps=args.steps, warmup=args.warmup)
                t1 = med if n == 1 else t1
                eff = t1 / med if scaling == "weak" else t1 / (n * med)
                print(f"{name:8} {scaling:7} {n:3d} {batch:6d} {med:10.3f} "
                      f"{lo:8.3f}-{hi:8.3f} {eff:10.2f}")
                results.append(dict(workload=name, scaling=scaling, devices=n, batch=batch,
                                    median_ms=med, p10_ms=lo, p90_ms=hi, efficiency=eff))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(device=jax.devices()[0].device_kind, args=vars(args),
                           results=results), f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
