"""SpikingJelly's convolutional Fashion-MNIST tutorial, ported to snnjax.

    python examples/fashion_cnn.py [--epochs 3] [--T 4] [--channels 8] [--encoding direct|poisson]
    python examples/fashion_cnn.py --quick          # a few seconds: tiny data, a few steps

The network is the tutorial's (``spikingjelly.activation_based.examples.conv_fashion_mnist``):
``{Conv2d-BatchNorm2d-IFNode-MaxPool2d} x 2 - Flatten - Linear - IFNode - Linear``, all layers
in multi-step mode, the static image fed at each of the ``T`` steps (``--encoding direct``, as the
tutorial; ``--encoding poisson`` uses :class:`snnjax.encoding.PoissonEncoder` instead). Compared
with the tutorial it adds a ``layer.Dropout`` (one mask per sequence) before the hidden Linear,
and it trains with the TET loss (``functional.temporal_efficient_training_cross_entropy``: the
cross entropy of every time step's logits) instead of the MSE of the output firing rate, so the
tutorial's last ``IFNode`` is left out: TET, as in its paper, reads the real-valued per-step
output of the last Linear. The prediction is the argmax of the time-averaged logits. During
evaluation (under ``nnx.jit``) a :class:`snnjax.monitor.FiringRateMonitor` records the firing
rate of every ``IFNode``; they are printed and plotted to ``--out`` (a PNG).

Data. Fashion-MNIST cannot be downloaded here, so :func:`make_fashion_like` draws a
Fashion-MNIST-shaped data set procedurally and deterministically: 28 x 28 x 1 grey images in
[0, 1] of 10 classes with Fashion-MNIST's names (T-shirt/top, Trouser, Pullover, Dress, Coat,
Sandal, Shirt, Sneaker, Bag, Ankle boot), each a class-specific silhouette made of soft-edged
boxes, trapezoids, rings and thick strokes with randomly jittered proportions, then randomly
scaled, rotated (up to 12 degrees) and shifted (up to about 3 pixels), with random brightness,
a smooth texture, for a third of them a soft blob that darkens or brightens part of the
garment, and pixel noise. Pullover, Coat and Shirt differ only in details (length, a faint or
clear opening, a collar, stripes of any strength), so they are confused, as in the real data.

Result of the default run (4800 training and 2000 test images, 3 epochs, T=4, 8 channels,
batch 64): test accuracy 0.894 (chance 0.10; a logistic regression on the pixels gets 0.84, as
on the real Fashion-MNIST), firing rates 0.23, 0.23 and 0.45; 31 s wall on an idle 2-core CPU
(JAX 0.10.2).

Porting note: the key lines, SpikingJelly 2.0.0 (PyTorch) -> snnjax (Flax NNX).

* Layout, NCHW -> NHWC (Flax's channels last):
    SJ:  img [N, 1, 28, 28], x_seq [T, N, C, H, W]
    jax: img [B, 28, 28, 1], x_seq [T, B, H, W, C]; layer.Flatten orders features (h, w, c)
* Layers (explicit PRNG keys: rngs=):
    SJ:  layer.Conv2d(1, c, kernel_size=3, padding=1, bias=False), layer.BatchNorm2d(c)
    jax: layer.SeqToANNContainer(layer.Conv2d(1, c, 3, padding=1, bias=False, rngs=rngs),
                                 layer.BatchNorm2d(c))     # statistics over T*B*H*W
    SJ:  neuron.IFNode(surrogate_function=surrogate.ATan()), layer.MaxPool2d(2, 2)
    jax: neuron.IFNode(surrogate_function=surrogate.ATan(), step_mode="m"),
         layer.MaxPool2d(2, 2, step_mode="m")
    SJ:  layer.Linear(c * 7 * 7, c * 4 * 4, bias=False)
    jax: layer.Linear(c * 7 * 7, c * 4 * 4, bias=False, step_mode="m", rngs=rngs)
    SJ:  functional.set_step_mode(net, step_mode='m')
    jax: step_mode="m" on each layer (set_step_mode would also switch the layers inside the
         SeqToANNContainer, which must stay single-step)
* Input:
    SJ:  x_seq = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    jax: x_seq = jnp.broadcast_to(img, (T,) + img.shape)
    SJ:  encoder = encoding.PoissonEncoder(); x_seq = torch.stack([encoder(img) for _ in range(T)])
    jax: x_seq = encoding.PoissonEncoder(rngs=nnx.Rngs(1)).encode(img, T)
* Training (optimiser, gradient, state reset):
    SJ:  optimizer = torch.optim.Adam(net.parameters(), lr)
         lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    jax: optimizer = nnx.Optimizer(model, optax.adam(optax.cosine_decay_schedule(lr, steps)),
                                   wrt=nnx.Param)
    SJ:  out_fr = net(img); loss = F.mse_loss(out_fr, label_onehot)
         optimizer.zero_grad(); loss.backward(); optimizer.step()
         functional.reset_net(net)
    jax: @nnx.jit
         def train_step(model, optimizer, x_seq, labels):
             loss_fn = lambda model: functional.temporal_efficient_training_cross_entropy(
                 model(x_seq), labels)
             loss, grads = nnx.value_and_grad(loss_fn)(model)
             optimizer.update(model, grads)
             functional.reset_net(model)   # inside the step: states leave it as they came
             return loss
    SJ:  net.eval() / net.train()
    jax: model.eval() / model.train()      # BatchNorm running statistics, Dropout off
* Monitoring (no hooks: the records are returned, so they come out of jit):
    SJ:  mon = monitor.OutputMonitor(net, neuron.IFNode, lambda s: s.mean()); net(x); mon.records
    jax: mon = monitor.FiringRateMonitor(model)
         out, records = mon(model, x_seq)  # inside nnx.jit
         monitor.plot_firing_rates(records, "rates.png")
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from snnjax import encoding, functional, layer, monitor, neuron, surrogate

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")


# --- a Fashion-MNIST-shaped data set, drawn procedurally -----------------------------------------

def _soft(d: np.ndarray, edge: float = 0.07) -> np.ndarray:
    """Coverage of a shape from a signed distance ``d`` (positive inside): a linear ramp of
    width ``edge`` (about one pixel) across the boundary."""
    return np.clip(0.5 + d / edge, 0.0, 1.0)


def _box(u, v, u0, u1, v0, v1):
    return _soft(np.minimum(np.minimum(u - u0, u1 - u), np.minimum(v - v0, v1 - v)))


def _trapezoid(u, v, v0, v1, half_top, half_bottom, centre=0.0):
    """Symmetric about ``u = centre``; half-width goes linearly from ``half_top`` at ``v0`` to
    ``half_bottom`` at ``v1``."""
    t = np.clip((v - v0) / (v1 - v0), 0.0, 1.0)
    half = half_top + (half_bottom - half_top) * t
    return _soft(np.minimum(half - np.abs(u - centre), np.minimum(v - v0, v1 - v)))


def _ring(u, v, cu, cv, r_in, r_out):
    r = np.hypot(u - cu, v - cv)
    return _soft(np.minimum(r - r_in, r_out - r))


def _segment(u, v, p0, p1, half_width):
    """A thick line from ``p0`` to ``p1`` (points ``(u, v)``, entries scalars or ``[N, 1, 1]``)."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return _soft(half_width - np.hypot(u - p0[0] - t * du, v - p0[1] - t * dv))


def _union(*shapes):
    return np.maximum.reduce(shapes)


def _silhouette(c: int, u: np.ndarray, v: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Class ``c``'s shape on canonical coordinates ``u`` (right), ``v`` (down) in about [-1, 1];
    ``j``: per-image jitter of its proportions and details, ``[N, 6]`` in [-1, 1]."""
    a, b, d, e, f, g = (j[:, k, None, None] for k in range(6))
    f01, g01 = (f + 1) / 2, (g + 1) / 2                     # in [0, 1]
    if c in (0, 2, 4, 6):                                   # tops: torso and sleeves
        half = 0.42 + 0.06 * a
        bottom = {0: 0.75, 2: 0.72, 4: 0.86, 6: 0.76}[c] + 0.1 * b
        torso = _trapezoid(u, v, -0.62, bottom, half, half + 0.04)
        if c == 0:                                          # short sleeves
            sleeve_end = -0.2 + 0.06 * d
            sleeves = _union(_box(u, v, -0.85, -half + 0.05, -0.62, sleeve_end),
                             _box(u, v, half - 0.05, 0.85, -0.62, sleeve_end))
        else:                                               # long sleeves, slanting out
            w = 0.11 + 0.02 * d
            wrist = (half + 0.3 + 0.08 * e, bottom - 0.1)
            sleeves = _union(_segment(u, v, (-half + 0.02, -0.5), (-wrist[0], wrist[1]), w),
                             _segment(u, v, (half - 0.02, -0.5), wrist, w))
        img = _union(torso, sleeves)
        neck = _ring(u, v, 0.0, -0.7, 0.0, 0.16 + 0.03 * e)
        img = np.minimum(img, 1.0 - neck)
        if c == 4:                       # coat: an open front (faint or clear), maybe a collar
            opening = _box(u, v, -0.035, 0.035, -0.55, bottom + 0.1)
            img = np.minimum(img, 1.0 - (0.15 + 0.6 * f01) * opening)
            img = _union(img, 0.7 * g01 * _trapezoid(u, v, -0.62, -0.3, 0.22, 0.05))
        if c == 6:                       # shirt: collar tips (some), stripes (of any strength)
            tips = _union(_trapezoid(u, v, -0.66, -0.45, 0.2, 0.04, -0.1),
                          _trapezoid(u, v, -0.66, -0.45, 0.2, 0.04, 0.1))
            img = _union(img, g01 * tips)
        if c in (2, 6):                  # pullovers may be patterned too, more weakly
            depth = 0.3 * f01 if c == 6 else 0.12 * f01
            img = img * (1.0 - depth + depth * np.cos(u * (18.0 + 4.0 * e)))
        return img
    if c == 1:                                              # trouser: waist and two legs
        gap = 0.05 + 0.03 * a
        half = 0.36 + 0.05 * b
        return _union(_box(u, v, -half, half, -0.9, -0.5),
                      _trapezoid(u, v, -0.9, 0.92, half / 2, half / 2 - 0.03, -half / 2 - gap / 2),
                      _trapezoid(u, v, -0.9, 0.92, half / 2, half / 2 - 0.03, half / 2 + gap / 2))
    if c == 3:                                              # dress: narrow top, wide skirt
        return _union(_trapezoid(u, v, -0.85, -0.1, 0.22 + 0.04 * a, 0.16),
                      _trapezoid(u, v, -0.15, 0.9, 0.16, 0.5 + 0.08 * b))
    if c == 5:                                              # sandal: sole and thin straps
        sole = _box(u, v, -0.85, 0.85, 0.3 + 0.05 * a, 0.42 + 0.05 * a)
        top = -0.15 + 0.08 * b
        straps = [_segment(u, v, (x0, 0.32), (x0 + 0.25, top), 0.045) for x0 in (-0.6, -0.15, 0.3)]
        back = _segment(u, v, (0.75, 0.32), (0.65, top - 0.25 + 0.05 * d), 0.06)
        return _union(sole, back, *straps)
    if c == 7:                                              # sneaker: low, higher at the back
        top = 0.25 - 0.45 * np.clip((u + 0.3) / 1.1, 0.0, 1.0) + 0.05 * a
        upper = _soft(np.minimum(np.minimum(v - top, 0.45 - v), np.minimum(u + 0.9, 0.85 - u)))
        sole = _box(u, v, -0.9, 0.88, 0.42, 0.55 + 0.04 * b)
        return _union(0.85 * upper, sole)
    if c == 8:                                              # bag: body and handle
        half = 0.62 + 0.08 * a
        body = _box(u, v, -half, half, -0.25 + 0.08 * b, 0.8)
        handle = _ring(u, v, 0.0, -0.25 + 0.08 * b, 0.26 + 0.05 * d, 0.36 + 0.05 * d)
        return _union(body, handle)
    if c == 9:                                              # ankle boot: shaft and foot
        shaft = _box(u, v, 0.05 + 0.06 * a, 0.68, -0.75 + 0.08 * b, 0.5)
        foot = _box(u, v, -0.85, 0.68, 0.12 + 0.04 * d, 0.55)
        heel = _box(u, v, 0.4, 0.68, 0.5, 0.7)
        return _union(shaft, foot, heel)
    raise ValueError(f"make_fashion_like: class index must be in [0, 10), got {c}")


def make_fashion_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic Fashion-MNIST-shaped data set.

    Args:
      n: number of images (classes balanced, in random order).
      seed: NumPy seed; the same ``(n, seed)`` gives the same data.

    Returns:
      ``images`` ``[n, 28, 28, 1]`` float32 in ``[0, 1]`` and ``labels`` ``[n]`` int32 in
      ``[0, 10)``.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int32)
    p = (np.arange(28) + 0.5) / 14.0 - 1.0                  # pixel centres in [-1, 1]
    py, px = np.meshgrid(p, p, indexing="ij")
    scale = rng.uniform(0.82, 1.08, (n, 2))
    angle = np.deg2rad(rng.uniform(-12.0, 12.0, n))
    shift = rng.uniform(-0.2, 0.2, (n, 2))
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    x0 = px[None] - shift[:, 0, None, None]
    y0 = py[None] - shift[:, 1, None, None]
    u = (cos * x0 + sin * y0) / scale[:, 0, None, None]     # image -> canonical coordinates
    v = (-sin * x0 + cos * y0) / scale[:, 1, None, None]
    jitter = rng.uniform(-1.0, 1.0, (n, 6))
    images = np.zeros((n, 28, 28), np.float64)
    for c in range(10):
        idx = np.nonzero(labels == c)[0]
        if idx.size:
            images[idx] = _silhouette(c, u[idx], v[idx], jitter[idx])
    # brightness, a smooth multiplicative texture, pixel noise
    brightness = rng.uniform(0.5, 1.0, (n, 1, 1))
    k = rng.uniform(2.0, 6.0, (n, 2, 1, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 2, 1, 1))
    texture = 1.0 - 0.15 * (1.0 + np.sin(k[:, 0] * px + phase[:, 0])
                            * np.sin(k[:, 1] * py + phase[:, 1]))
    images = images * brightness * texture
    # a third of the images: a soft blob that darkens or brightens part of the garment
    centre = rng.uniform(-0.6, 0.6, (n, 2, 1, 1))
    radius = rng.uniform(0.15, 0.35, (n, 1, 1))
    blob = _soft(radius - np.hypot(px - centre[:, 0], py - centre[:, 1]), 0.2)
    strength = rng.uniform(-0.6, 0.4, (n, 1, 1)) * (rng.random((n, 1, 1)) < 1 / 3)
    images = images * (1.0 + strength * blob) + rng.normal(0.0, 0.1, images.shape)
    return np.clip(images, 0.0, 1.0).astype(np.float32)[..., None], labels


# --- the network -------------------------------------------------------------------------------

class CSNN(nnx.Module):
    """``[T, B, 28, 28, 1] -> [T, B, 10]`` logits per time step.

    Args:
      channels: channels of both convolutions (the tutorial's ``-channels``, 128 there).
      neuron_type: ``'if'`` (the tutorial's ``IFNode``) or ``'lif'`` (``LIFNode(tau=2)``).
      dropout: drop probability of the ``layer.Dropout`` before the hidden Linear.
      rngs: ``nnx.Rngs`` for the initialisation and the dropout masks.
    """

    def __init__(self, channels: int, *, neuron_type: str = "if", dropout: float = 0.2,
                 rngs: nnx.Rngs):
        c = channels

        def sn() -> neuron.BaseNode:
            if neuron_type == "lif":
                return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")
            return neuron.IFNode(surrogate_function=surrogate.ATan(), step_mode="m")

        self.conv_fc = nnx.Sequential(
            layer.SeqToANNContainer(layer.Conv2d(1, c, 3, padding=1, bias=False, rngs=rngs),
                                    layer.BatchNorm2d(c)),
            sn(),
            layer.MaxPool2d(2, 2, step_mode="m"),                     # 14 x 14
            layer.SeqToANNContainer(layer.Conv2d(c, c, 3, padding=1, bias=False, rngs=rngs),
                                    layer.BatchNorm2d(c)),
            sn(),
            layer.MaxPool2d(2, 2, step_mode="m"),                     # 7 x 7
            layer.Flatten(step_mode="m"),
            layer.Dropout(dropout, step_mode="m", rngs=rngs),
            layer.Linear(c * 7 * 7, c * 4 * 4, bias=False, step_mode="m", rngs=rngs),
            sn(),
            layer.Linear(c * 4 * 4, 10, bias=False, step_mode="m", rngs=rngs),
        )

    def __call__(self, x_seq: jax.Array) -> jax.Array:
        return self.conv_fc(x_seq)


def encode(images: jax.Array, T: int, kind: str, encoder: encoding.PoissonEncoder) -> jax.Array:
    """``[B, 28, 28, 1] -> [T, B, 28, 28, 1]``: the image at every step, or Poisson spikes."""
    if kind == "poisson":
        return encoder.encode(images, T)
    return jnp.broadcast_to(images, (T,) + images.shape)


# --- training and evaluation -------------------------------------------------------------------

def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny data and a few steps (seconds)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=4800)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--neuron", choices=("if", "lif"), default="if")
    ap.add_argument("--encoding", choices=("direct", "poisson"), default="direct")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fashion_firing_rates.png", help="firing-rate plot (PNG)")
    args = ap.parse_args(argv)
    if args.quick:      # a handful of steps on one small batch, repeated
        args.n_train, args.n_test, args.batch, args.epochs = 64, 64, 64, 40
        args.channels, args.T = 4, 2
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, evaluate, print and plot. Returns ``losses`` (per step), ``train_accuracy`` (the
    first training batch, eval mode), ``test_accuracy``, ``records`` (the monitor's, all test
    batches), ``rates`` (per layer), ``out`` (the PNG path) and ``seconds``."""
    args = _parse(argv)
    start = time.time()
    x_train, y_train = make_fashion_like(args.n_train, seed=args.seed)
    x_test, y_test = make_fashion_like(args.n_test, seed=args.seed + 1)

    rngs = nnx.Rngs(args.seed)
    model = CSNN(args.channels, neuron_type=args.neuron, dropout=args.dropout, rngs=rngs)
    encoder = encoding.PoissonEncoder(rngs=nnx.Rngs(args.seed + 1))
    steps_per_epoch = args.n_train // args.batch
    schedule = optax.cosine_decay_schedule(args.lr, args.epochs * steps_per_epoch)
    optimizer = nnx.Optimizer(model, optax.adam(schedule), wrt=nnx.Param)
    mon = monitor.FiringRateMonitor(model)           # every IFNode, found by path
    # a fresh neuron's state is a weakly typed scalar, a reset one a float32 scalar: reset once
    # so that the jitted steps see the same state types at every call (one compilation each)
    functional.reset_net(model)

    @nnx.jit
    def train_step(model, optimizer, encoder, images, labels):
        x_seq = encode(images, args.T, args.encoding, encoder)

        def loss_fn(model):
            return functional.temporal_efficient_training_cross_entropy(model(x_seq), labels)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        functional.reset_net(model)   # as the tutorial, after each batch: the states leave the
        return loss                   # step as they came (scalars), so it compiles once

    @nnx.jit
    def evaluate(model, encoder, images, labels):
        logits, records = mon(model, encode(images, args.T, args.encoding, encoder))
        functional.reset_net(model)
        correct = jnp.sum(jnp.argmax(logits.mean(0), -1) == labels)
        return correct, records

    def accuracy(images, labels, batch):
        model.eval()                                 # BatchNorm running stats, no dropout
        correct, records = 0, {name: [] for name in mon.monitored_layers}
        for i in range(0, len(labels) - batch + 1, batch):   # one compiled shape
            c, rec = evaluate(model, encoder, images[i:i + batch], labels[i:i + batch])
            correct += int(c)
            for name, values in rec.items():
                records[name].extend(values)
        model.train()
        return correct / (len(labels) // batch * batch), records

    rng = np.random.default_rng(args.seed)
    losses = []
    for epoch in range(args.epochs):
        perm = rng.permutation(args.n_train) if not args.quick else np.arange(args.n_train)
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            losses.append(float(train_step(model, optimizer, encoder, x_train[idx], y_train[idx])))
        if not args.quick:
            print(f"epoch {epoch}: mean train loss {np.mean(losses[-steps_per_epoch:]):.4f}")

    train_acc, _ = accuracy(x_train[:args.batch], y_train[:args.batch], args.batch)
    eval_batch = min(500, args.n_test)
    test_acc, records = accuracy(x_test, y_test, eval_batch)
    seconds = time.time() - start
    print(f"test accuracy: {test_acc:.4f} ({len(y_test) // eval_batch * eval_batch} test images, "
          f"T={args.T}, {args.encoding} encoding, {seconds:.1f} s)")
    rates = monitor.print_firing_rates(records)
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        where = dict(zip(mon.monitored_layers, ("after conv 1", "after conv 2", "hidden fc")))
        monitor.plot_firing_rates({f"{name}\n({where.get(name, '')})": recs
                                   for name, recs in records.items()}, ax=ax)
        ax.set_title(f"{args.neuron.upper()} neurons, test set, T={args.T}")
        ax.tick_params(axis="x", labelrotation=0)
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        plt.close(fig)
        print(f"firing-rate plot written to {args.out}")
    return {"losses": losses, "train_accuracy": train_acc, "test_accuracy": test_acc,
            "records": records, "rates": rates, "out": args.out, "seconds": seconds}


if __name__ == "__main__":
    main()
