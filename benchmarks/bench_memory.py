"""Compiled memory and step time of a spiking CNN's training step (issue 15), against its ReLU twin.

The network is written exactly as a user writes it (no flag, no fused block)::

    SeqToANNContainer(Conv2d, BatchNorm2d) -> LIFNode(step_mode='m') [-> SeqToANNContainer(MaxPool2d)]

six times (max pooling after blocks 2, 4 and 6), then ``Flatten -> Linear`` and the mean over
time; input ``[B, 32, 32, 3]`` repeated over ``T`` steps; cross-entropy; SGD with momentum
(optax); fp32. The ReLU twin is written plainly: ``nnx.Conv``, ``nnx.BatchNorm``, ``nnx.relu``,
``nnx.max_pool`` on ``[T*B, H, W, C]``.

Paths (``--paths``): ``relu``; ``scan`` (LIF, ``backend='scan'``); ``pallas`` and ``mosaic``
(LIF on the GPU kernels; skipped without a GPU); ``remat`` / ``remat2`` / ``remat3`` (LIF on the
default backend with every block, every 2 or 3 blocks, wrapped in ``layer.Remat``);
``nostore`` (LIF, default backend, compact spike storage switched off: the unoptimised
container, for comparison).

Every figure is XLA's ``jax.jit(step).lower(...).compile().memory_analysis()`` of the training
step without buffer donation: temp, argument, output and alias bytes, and
``total = temp + argument + output - alias`` (MiB). Step time (``--time``): median of
``--reps`` (>= 20) calls after warm-up. With torch (and SpikingJelly) on a CUDA machine the
allocator peak (``torch.cuda.max_memory_allocated``) of one training step of the same LIF and
ReLU networks is measured in the same run.

Usage::

    python benchmarks/bench_memory.py --T 4 8 16 --md            # CPU: scan, relu, remat
    python benchmarks/bench_memory.py --smoke                    # seconds, CPU
    python benchmarks/bench_memory.py --T 8 --time --json out.json --md   # GPU: all paths
    python benchmarks/bench_memory.py --workload all             # + bench_memory_shd.main(args)
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from snnjax import layer, neuron  # noqa: E402

try:
    from snnjax import _spikes  # noqa: E402
except ImportError:           # an older snnjax (the 'before' figures): no memory options
    _spikes = None

MIB = 2.0 ** 20
POOL_AFTER = (1, 3, 5)          # max pooling after blocks 2, 4 and 6 (0-based 1, 3, 5)
GPU_PATHS = ("pallas", "mosaic")
ALL_PATHS = ("relu", "scan", "nostore", "remat", "remat2", "pallas", "mosaic")


# --- the networks -----------------------------------------------------------------------------

class SpikingCNN(nnx.Module):
    """Six ``SeqToANNContainer(Conv2d, BatchNorm2d) -> LIFNode`` blocks, max pooling after blocks
    2, 4, 6, ``Flatten -> Linear`` head; ``x [B, H, W, 3] -> logits [B, classes]`` (time mean).

    ``remat_every=k`` (k >= 1) wraps every ``k`` consecutive blocks in ``layer.Remat``."""

    def __init__(self, T: int, channels: int, size: int, classes: int = 10, *,
                 backend: str = "auto", remat_every: int = 0, rngs: nnx.Rngs):
        self.T = T
        blocks, cin = [], 3
        for i in range(6):
            mods = [layer.SeqToANNContainer(
                        layer.Conv2d(cin, channels, 3, padding=1, bias=False, rngs=rngs),
                        layer.BatchNorm2d(channels)),
                    neuron.LIFNode(step_mode="m", backend=backend)]
            if i in POOL_AFTER:
                mods.append(layer.SeqToANNContainer(layer.MaxPool2d(2)))
            blocks.append(mods)
            cin = channels
        if remat_every:
            groups = [sum(blocks[i:i + remat_every], []) for i in range(0, 6, remat_every)]
            self.body = nnx.List([layer.Remat(*g) for g in groups])
        else:
            self.body = nnx.List(sum(blocks, []))
        side = size // 2 ** len(POOL_AFTER)
        self.flatten = layer.Flatten(step_mode="m")
        self.fc = layer.Linear(channels * side * side, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jnp.broadcast_to(x, (self.T,) + x.shape)      # direct encoding: [T, B, H, W, 3]
        for m in self.body:
            h = m(h)
        return self.fc(self.flatten(h)).mean(0)


class ReLUCNN(nnx.Module):
    """The ReLU twin written plainly on ``[T*B, H, W, C]`` (same layers, ``nnx`` only)."""

    def __init__(self, T: int, channels: int, size: int, classes: int = 10, *, rngs: nnx.Rngs):
        self.T = T
        convs, bns, cin = [], [], 3
        for _ in range(6):
            convs.append(nnx.Conv(cin, channels, (3, 3), padding=1, use_bias=False, rngs=rngs))
            bns.append(nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs))
            cin = channels
        self.convs, self.bns = nnx.List(convs), nnx.List(bns)
        side = size // 2 ** len(POOL_AFTER)
        self.fc = nnx.Linear(channels * side * side, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        T, B = self.T, x.shape[0]
        h = jnp.broadcast_to(x, (T,) + x.shape).reshape((T * B,) + x.shape[1:])
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            h = nnx.relu(bn(conv(h)))
            if i in POOL_AFTER:
                h = nnx.max_pool(h, (2, 2), (2, 2))
        h = h.reshape(T, B, -1)
        return self.fc(h).mean(0)


def build(path: str, T: int, batch: int, size: int, channels: int, seed: int = 0) -> nnx.Module:
    rngs = nnx.Rngs(seed)
    if path == "relu":
        return ReLUCNN(T, channels, size, rngs=rngs)
    backend = {"scan": "scan", "pallas": "pallas", "mosaic": "mosaic"}.get(path, "auto")
    remat_every = {"remat": 1, "remat2": 2, "remat3": 3}.get(path, 0)
    return SpikingCNN(T, channels, size, backend=backend, remat_every=remat_every, rngs=rngs)


# --- the training step ------------------------------------------------------------------------

def make_step(model: nnx.Module, lr: float = 0.1, momentum: float = 0.9):
    """``step(params, rest, opt_state, x, y) -> (params, rest, opt_state, loss)``: one SGD
    (momentum) step on the cross-entropy; ``rest`` holds the batch statistics (updated) and the
    neurons' initial states (unchanged: every step starts from the reset state)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.sgd(lr, momentum=momentum)
    opt_state = tx.init(params)

    def loss_fn(params, rest, x, y):
        m = nnx.merge(graphdef, params, rest, copy=True)
        logits = m(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, nnx.state(m, nnx.BatchStat)

    def step(params, rest, opt_state, x, y):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        m = nnx.merge(graphdef, params, rest, copy=True)
        nnx.update(m, stats)
        _, _, rest = nnx.split(m, nnx.Param, ...)
        return params, rest, opt_state, loss

    return step, (params, rest, opt_state)


def memory(compiled: Any) -> dict:
    ma = compiled.memory_analysis()
    out = {k: getattr(ma, f"{k}_size_in_bytes") / MIB
           for k in ("temp", "argument", "output", "alias")}
    out["total"] = out["temp"] + out["argument"] + out["output"] - out["alias"]
    return out


def measure(path: str, T: int, args: argparse.Namespace) -> dict:
    model = build(path, T, args.batch, args.size, args.channels)
    step, (params, rest, opt_state) = make_step(model)
    key = jax.random.PRNGKey(1)
    x = jax.random.uniform(key, (args.batch, args.size, args.size, 3), jnp.float32)
    y = jax.random.randint(jax.random.PRNGKey(2), (args.batch,), 0, 10)
    ctx = (_spikes.compact_storage(False) if path == "nostore" and _spikes is not None
           else contextlib.nullcontext())
    with ctx:
        jitted = jax.jit(step)
        t0 = time.perf_counter()
        lowered = jitted.lower(params, rest, opt_state, x, y)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t0
    if args.buffers:
        import bench_memory_shd
        print(f"# largest buffers of {path} T={T} (MiB; shapes sharing one slot):")
        for size, shapes in bench_memory_shd.report_buffers(
                lambda options: lowered.compile(compiler_options=options), args.buffers):
            print(f"#   {size:8.2f}  {shapes[:300]}")
    row = {"workload": "cnn", "path": path, "T": T, "batch": args.batch, "size": args.size,
           "channels": args.channels, "device": jax.devices()[0].device_kind,
           "compile_s": compile_s, **memory(compiled)}
    if args.time:
        state = (params, rest, opt_state)
        for _ in range(3):
            state = compiled(*state, x, y)[:3]
        jax.block_until_ready(state)
        times = []
        for _ in range(max(args.reps, 20)):
            t0 = time.perf_counter()
            out = compiled(*state, x, y)
            jax.block_until_ready(out)
            times.append((time.perf_counter() - t0) * 1e3)
            state = out[:3]
        row["step_ms"] = float(np.median(times))
    return row


# --- SpikingJelly (torch), same run -----------------------------------------------------------

def spikingjelly_rows(Ts: list[int], args: argparse.Namespace) -> list[dict]:
    """Allocator peak (``torch.cuda.max_memory_allocated``) of one training step of the same
    LIF and ReLU networks in PyTorch / SpikingJelly (NCHW, SeqToANNContainer, LIFNode 'm',
    cupy/triton backend as SpikingJelly picks it). Empty (with a message) where unavailable."""
    try:
        import torch
        import torch.nn as tnn
    except ImportError:
        print("# SpikingJelly: torch is not installed: skipped")
        return []
    if not torch.cuda.is_available():
        print("# SpikingJelly: no CUDA device for torch: skipped")
        return []
    try:
        from spikingjelly.activation_based import functional as sjf
        from spikingjelly.activation_based import layer as sjl
        from spikingjelly.activation_based import neuron as sjn
    except ImportError as e:
        sjf = sjl = sjn = None
        print(f"# SpikingJelly is not importable ({e}): only the PyTorch ReLU network is measured")
    c, dev = args.channels, "cuda"
    side = args.size // 2 ** len(POOL_AFTER)

    def lif_net():
        mods, cin = [], 3
        for i in range(6):
            mods += [sjl.SeqToANNContainer(tnn.Conv2d(cin, c, 3, padding=1, bias=False),
                                           tnn.BatchNorm2d(c)),
                     sjn.LIFNode(step_mode="m")]
            if i in POOL_AFTER:
                mods.append(sjl.SeqToANNContainer(tnn.MaxPool2d(2)))
            cin = c
        mods += [sjl.SeqToANNContainer(tnn.Flatten(), tnn.Linear(c * side * side, 10))]
        return tnn.Sequential(*mods)

    def relu_net():
        mods, cin = [], 3
        for i in range(6):
            mods += [tnn.Conv2d(cin, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c), tnn.ReLU()]
            if i in POOL_AFTER:
                mods.append(tnn.MaxPool2d(2))
            cin = c
        mods += [tnn.Flatten(), tnn.Linear(c * side * side, 10)]
        return tnn.Sequential(*mods)

    rows = []
    for T in Ts:
        for name, factory in (("sj-lif", lif_net), ("torch-relu", relu_net)):
            if name == "sj-lif" and sjn is None:
                continue
            torch.manual_seed(0)
            net = factory().to(dev)
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
            x = torch.rand(args.batch, 3, args.size, args.size, device=dev)
            y = torch.randint(0, 10, (args.batch,), device=dev)

            def one_step():
                opt.zero_grad(set_to_none=True)
                xs = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
                if name == "sj-lif":
                    out = net(xs).mean(0)
                    sjf.reset_net(net)
                else:
                    out = net(xs.flatten(0, 1)).reshape(T, args.batch, -1).mean(0)
                loss = tnn.functional.cross_entropy(out, y)
                loss.backward()
                opt.step()
            one_step()                      # momentum buffers exist from here on
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            one_step()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            row = {"workload": "cnn", "path": name, "T": T, "batch": args.batch,
                   "size": args.size, "channels": c, "device": torch.cuda.get_device_name(),
                   "torch_peak": peak / MIB, "torch_resident": base / MIB}
            if args.time:
                for _ in range(3):
                    one_step()
                times = []
                for _ in range(max(args.reps, 20)):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    one_step()
                    torch.cuda.synchronize()
                    times.append((time.perf_counter() - t0) * 1e3)
                row["step_ms"] = float(np.median(times))
            rows.append(row)
            del net, opt
            torch.cuda.empty_cache()
    return rows


# --- output -----------------------------------------------------------------------------------

def markdown(rows: list[dict]) -> str:
    relu = {(r["T"], r["batch"]): r["total"] for r in rows if r["path"] == "relu"}
    lines = ["| path | T | batch | temp MiB | argument MiB | output MiB | alias MiB | "
             "total MiB | x ReLU | step ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "total" in r:
            ref = relu.get((r["T"], r["batch"]))
            ratio = f"{r['total'] / ref:.2f}x" if ref else "-"
            lines.append(f"| {r['path']} | {r['T']} | {r['batch']} | {r['temp']:.1f} | "
                         f"{r['argument']:.1f} | {r['output']:.1f} | {r['alias']:.1f} | "
                         f"{r['total']:.1f} | {ratio} | "
                         f"{r['step_ms']:.2f} |" if "step_ms" in r else
                         f"| {r['path']} | {r['T']} | {r['batch']} | {r['temp']:.1f} | "
                         f"{r['argument']:.1f} | {r['output']:.1f} | {r['alias']:.1f} | "
                         f"{r['total']:.1f} | {ratio} | - |")
        else:   # torch: allocator peak
            step = f"{r['step_ms']:.2f}" if "step_ms" in r else "-"
            lines.append(f"| {r['path']} (allocator peak) | {r['T']} | {r['batch']} | - | - | - | "
                         f"- | {r['torch_peak']:.1f} | - | {step} |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", choices=("cnn", "shd", "all"), default="cnn")
    ap.add_argument("--T", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32, help="image side (H = W)")
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--paths", nargs="+", default=None, choices=ALL_PATHS + ("remat3",),
                    help="default: every path this device runs")
    ap.add_argument("--time", action="store_true", help="measure the step time")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", default=None, help="write the rows to this file")
    ap.add_argument("--md", action="store_true", help="print the markdown table")
    ap.add_argument("--smoke", action="store_true",
                    help="batch 4, 16x16, 16 channels, T=4, relu+scan+remat (seconds, CPU)")
    ap.add_argument("--no-torch", action="store_true", help="skip the SpikingJelly measurement")
    ap.add_argument("--buffers", type=int, default=0,
                    help="print each path's N largest buffers (XLA's buffer-assignment report)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.batch, args.size, args.channels, args.T = 4, 16, 16, [4]
        args.paths = args.paths or ["relu", "scan", "remat"]
    on_gpu = jax.default_backend() == "gpu"
    if args.paths is None:
        args.paths = list(ALL_PATHS) if on_gpu else [p for p in ALL_PATHS if p not in GPU_PATHS]
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    on_gpu = jax.default_backend() == "gpu"
    rows: list[dict] = []
    if args.workload in ("cnn", "all"):
        for T in args.T:
            for path in args.paths:
                if path in GPU_PATHS and not on_gpu:
                    print(f"# {path}: needs a GPU, skipped")
                    continue
                row = measure(path, T, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
        if not args.smoke and not args.no_torch:
            rows += spikingjelly_rows(args.T, args)
        if args.md:
            print(f"\nCNN training step, {jax.devices()[0].device_kind}, batch {args.batch}, "
                  f"{args.size}x{args.size}x3, {args.channels} channels, fp32, "
                  f"{datetime.date.today()}; total = temp + argument + output - alias "
                  f"(no donation)\n")
            print(markdown(rows))
    if args.workload in ("shd", "all"):
        try:
            import bench_memory_shd
        except ImportError:
            print("# benchmarks/bench_memory_shd.py is missing: the SHD workload is skipped")
        else:
            rows += bench_memory_shd.main(args) or []
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
