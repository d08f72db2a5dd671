"""Train a two-layer spiking MLP on scikit-learn's digits (8x8 images, 10 classes).

    python examples/digits.py [--epochs 30] [--T 8] [--encoding poisson|direct]

Linear(64 -> 128) + LIFNode -> Linear(128 -> 10) + LIFNode, T time steps, loss = cross-entropy
of the output firing rates (scaled), optimizer Adam (optax). Prints the test accuracy and writes
a spike raster of one test digit to ``digits_raster.png``.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from snnjax import functional, neuron


class SpikingMLP(nnx.Module):
    """[T, B, 64] -> [T, B, 10] spikes; both neuron layers run multi-step (time fused)."""

    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(64, hidden, rngs=rngs)
        self.sn1 = neuron.LIFNode(tau=2.0, step_mode="m")
        self.fc2 = nnx.Linear(hidden, 10, rngs=rngs)
        self.sn2 = neuron.LIFNode(tau=2.0, step_mode="m")

    def __call__(self, x_seq: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self.sn1(functional.seq_to_ann_forward(x_seq, self.fc1))
        out = self.sn2(functional.seq_to_ann_forward(h, self.fc2))
        return out, h


def encode(x: jax.Array, T: int, encoding: str, key: jax.Array) -> jax.Array:
    """Images in [0, 1] -> [T, B, 64]: Poisson spikes or the analog value at every step."""
    if encoding == "poisson":
        return jax.random.bernoulli(key, x, (T,) + x.shape).astype(jnp.float32)
    return jnp.broadcast_to(x, (T,) + x.shape)


def main() -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--encoding", choices=("poisson", "direct"), default="poisson")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--raster", default="digits_raster.png")
    args = ap.parse_args()

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=args.seed,
                                              stratify=y)

    model = SpikingMLP(args.hidden, rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)

    def rate_logits(model, xb, key):
        functional.reset_net(model)      # every batch is an independent sequence
        out, hidden = model(encode(xb, args.T, args.encoding, key))
        return 10.0 * out.mean(0), (out, hidden)

    @nnx.jit
    def train_step(model, optimizer, xb, yb, key):
        def loss_fn(model):
            logits, _ = rate_logits(model, xb, key)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def predict(model, xb, key):
        logits, (out, hidden) = rate_logits(model, xb, key)
        return jnp.argmax(logits, -1), out, hidden

    key = jax.random.PRNGKey(args.seed)
    rng = np.random.default_rng(args.seed)
    n_batches = len(x_tr) // args.batch
    start = time.time()
    bar = tqdm(range(args.epochs), desc="training", unit="epoch")
    for _ in bar:
        perm = rng.permutation(len(x_tr))
        losses = []
        for b in range(n_batches):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            key, sub = jax.random.split(key)
            losses.append(train_step(model, optimizer, x_tr[idx], y_tr[idx], sub))
        bar.set_postfix(loss=f"{float(np.mean(losses)):.3f}")

    key, sub = jax.random.split(key)
    pred, out, hidden = predict(model, x_te, sub)
    acc = float(np.mean(np.asarray(pred) == y_te))
    print(f"test accuracy: {acc:.4f} ({len(y_te)} test digits, T={args.T}, "
          f"{args.encoding} encoding, {time.time() - start:.1f} s)")

    if args.raster:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 3, 3]})
        axes[0].imshow(x_te[0].reshape(8, 8), cmap="gray_r")
        axes[0].set_title(f"digit {y_te[0]}\n(predicted {int(pred[0])})")
        axes[0].axis("off")
        for ax, spikes, name in ((axes[1], hidden[:, 0], "hidden layer"),
                                 (axes[2], out[:, 0], "output layer (one neuron per class)")):
            t, n = np.nonzero(np.asarray(spikes))
            ax.scatter(t, n, marker="|", s=60, color="k")
            ax.set_xlim(-0.5, args.T - 0.5)
            ax.set_ylim(-0.5, spikes.shape[-1] - 0.5)
            if spikes.shape[-1] <= 10:
                ax.set_yticks(range(spikes.shape[-1]))
            ax.set_xlabel("time step")
            ax.set_ylabel("neuron")
            ax.set_title(f"{name} spikes")
        fig.tight_layout()
        fig.savefig(args.raster, dpi=120)
        print(f"spike raster written to {args.raster}")
    return acc


if __name__ == "__main__":
    main()
