"""A PSN layer inside a small Flax NNX model (runs in seconds on a CPU).

Task: for sequences of T = 8 noisy 16-dimensional frames, say whether a pulse was hidden in
the first or in the second half of the sequence. Every time step is encoded by a shared Linear
layer; a PSN layer (``snnjax.neuron.PSN``) mixes all T steps with one learnable [T, T] matrix
product and fires; a readout averages the spikes over time.

    python examples/psn_flax_model.py
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from snnjax import neuron

T, FEATURES, HIDDEN, CLASSES = 8, 16, 32, 2


class PSNClassifier(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.encoder = nnx.Linear(FEATURES, HIDDEN, rngs=rngs)
        self.psn = neuron.PSN(T=T, rngs=rngs)                     # learnable weight [T, T], bias [T, 1]
        self.readout = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

    def __call__(self, x_seq: jax.Array) -> jax.Array:
        """``x_seq``: ``[T, B, FEATURES]`` -> logits ``[B, CLASSES]``."""
        spikes = self.psn(self.encoder(x_seq))                    # [T, B, HIDDEN], all steps at once
        return self.readout(spikes.mean(axis=0))


def make_data(rng: np.random.Generator, batch: int) -> tuple[jax.Array, jax.Array]:
    x = rng.normal(0.0, 1.0, (T, batch, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, batch)
    t = rng.integers(0, T // 2, batch) + y * (T // 2)            # pulse time: first or second half
    x[t, np.arange(batch), :4] += 3.0
    return jnp.asarray(x), jnp.asarray(y)


def main() -> None:
    model = PSNClassifier(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits
        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return loss, (logits.argmax(-1) == y).mean()

    rng = np.random.default_rng(0)
    for step in range(1, 201):
        loss, acc = train_step(model, optimizer, *make_data(rng, 64))
        if step % 50 == 0:
            print(f"step {step:3d}  loss {float(loss):.3f}  batch accuracy {float(acc):.2f}")
    x, y = make_data(np.random.default_rng(1), 512)
    acc = float((model(x).argmax(-1) == y).mean())
    print(f"held-out accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
