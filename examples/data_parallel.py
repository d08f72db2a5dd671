"""Train a spiking CNN data-parallel over every visible device (or FSDP-style).

    python examples/data_parallel.py [--epochs 3] [--T 4] [--fsdp] [--devices N]

Model: Conv(1->8, 3x3) + BatchNorm + LIFNode -> Conv(8->16, 3x3, stride 2) + BatchNorm + LIFNode
-> Linear(16*4*4 -> 10), on scikit-learn's 8x8 digits repeated over ``T`` steps (direct
encoding); loss = cross-entropy of the mean output over time, Adam (optax).

Data parallel (default): the batch axis of every input is sharded over a 1-D mesh ``('data',)``,
parameters and optimiser state are replicated; the loss is the mean over the global batch, so
XLA's partitioner all-reduces the gradients (BatchNorm's statistics are global-batch statistics
the same way). ``--fsdp``: parameters and optimiser state are sharded too (each array along its
largest axis divisible by the number of devices; the rest replicated), for models that do not
fit one device: XLA gathers each weight where it is used and reduce-scatters its gradient.
Either way the step is the same ``nnx.jit`` function as on one device; the neurons run per
shard (``snnjax.kernels.sharding``). With one device both are ordinary training.

On a CPU, try several virtual devices:
``XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/data_parallel.py``.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from snnjax import functional, neuron, surrogate


class SpikingCNN(nnx.Module):
    """``x [B, 8, 8, 1]`` (an image, repeated over ``T`` steps) -> logits ``[B, classes]``.

    Convolutions and batch norms act on ``[T * B, H, W, C]`` (time folded into the batch),
    the LIF neurons on ``[T, B, H, W, C]`` (multi-step: the time loop is fused).
    """

    def __init__(self, T: int = 4, channels: int = 8, classes: int = 10, *, rngs: nnx.Rngs):
        self.T = T
        c1, c2 = channels, 2 * channels
        self.conv1 = nnx.Conv(1, c1, (3, 3), padding="SAME", rngs=rngs)
        self.bn1 = nnx.BatchNorm(c1, momentum=0.9, rngs=rngs)
        self.sn1 = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m",
                                  detach_reset=True)
        self.conv2 = nnx.Conv(c1, c2, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
        self.bn2 = nnx.BatchNorm(c2, momentum=0.9, rngs=rngs)
        self.sn2 = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m",
                                  detach_reset=True)
        self.fc = nnx.Linear(c2 * 4 * 4, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        T, B = self.T, x.shape[0]
        h = self.bn1(self.conv1(x))                       # static input: computed once
        s = self.sn1(jnp.broadcast_to(h, (T,) + h.shape))  # [T, B, 8, 8, c1] spikes
        h = self.bn2(self.conv2(s.reshape((T * B,) + s.shape[2:])))
        s = self.sn2(h.reshape((T, B) + h.shape[1:]))     # [T, B, 4, 4, c2]
        return self.fc(s.reshape(T, B, -1)).mean(0)


def make_mesh(n: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh ``('data',)`` over the first ``n`` devices (default: all), Auto axes (plain
    ``jax.jit`` propagation)."""
    devices = jax.devices()[:n] if n else jax.devices()
    return jax.sharding.Mesh(np.array(devices), ("data",))


def param_spec(shape: tuple, n: int, fsdp: bool) -> P:
    """Replicated, or (FSDP) sharded along the largest axis divisible by ``n``."""
    if not fsdp or n == 1:
        return P()
    axes = sorted((i for i, d in enumerate(shape) if d % n == 0 and d >= n),
                  key=lambda i: -shape[i])
    if not axes:
        return P()
    spec = [None] * len(shape)
    spec[axes[0]] = "data"
    return P(*spec)


def place(tree: object, mesh: jax.sharding.Mesh, fsdp: bool) -> None:
    """Move the state of ``tree`` (a model, an optimiser, or a tuple of them) onto ``mesh``."""
    n = mesh.devices.size
    state = nnx.state(tree)
    shardings = jax.tree.map(lambda a: NamedSharding(mesh, param_spec(np.shape(a), n, fsdp)),
                             state)
    nnx.update(tree, jax.device_put(state, shardings))


def make_train_step():
    """``train_step(model, optimizer, x, y) -> loss`` (``nnx.jit``; sharding comes from the
    arguments)."""
    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            functional.reset_net(model)      # every batch is an independent sequence
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss
    return train_step


def load_data(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = digits.target.astype(np.int32)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def main() -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64, help="global batch (a multiple of devices)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--devices", type=int, default=None, help="default: all visible devices")
    ap.add_argument("--fsdp", action="store_true", help="shard parameters and optimiser state")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    mesh = make_mesh(args.devices)
    n = mesh.devices.size
    if args.batch % n:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the {n} devices")
    x_tr, x_te, y_tr, y_te = load_data(args.seed)
    model = SpikingCNN(args.T, rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    place((model, optimizer), mesh, args.fsdp)
    batch = NamedSharding(mesh, P("data"))           # the batch axis over the devices
    train_step = make_train_step()

    rng = np.random.default_rng(args.seed)
    steps = len(x_tr) // args.batch
    start = time.time()
    for epoch in range(args.epochs):
        perm = rng.permutation(len(x_tr))
        losses = []
        for b in range(steps):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            xb, yb = jax.device_put((x_tr[idx], y_tr[idx]), batch)
            losses.append(train_step(model, optimizer, xb, yb))
        print(f"epoch {epoch + 1}: loss {float(np.mean(losses)):.3f}")

    @nnx.jit
    def predict(model, x):
        functional.reset_net(model)
        return jnp.argmax(model(x), -1)

    model.eval()
    m = (len(x_te) // n) * n
    pred = predict(model, jax.device_put(x_te[:m], batch))
    acc = float(np.mean(np.asarray(pred) == y_te[:m]))
    mode = "FSDP" if args.fsdp else "data parallel"
    print(f"test accuracy: {acc:.4f} on {n} device(s), {mode}, T={args.T}, "
          f"{time.time() - start:.1f} s")
    return acc


if __name__ == "__main__":
    main()
