"""Orbax checkpoints of the whole training state of a spiking CNN (issue 14, point 6).

The state saved: parameters (convolution, Linear, PLIF's learnable ``w``), BatchNorm running
statistics, the optimiser state (``nnx.Optimizer`` with Adam: step count, first and second
moments), the neuron states and the Dropout mask and RNG stream. Training runs over sequences
of two chunks (truncated BPTT: the neuron state and the dropout mask carry over from the first
chunk to the second; a new sequence starts from ``reset_net``'s values), and the checkpoint is
taken between the two chunks of a sequence, so every part of the state matters for what comes
next. Resumed training must continue bit-identically to training that never stopped.

The save and the restore (into an ``nnx.eval_shape`` abstract model and optimiser) are the
README's "Checkpoints with Orbax" snippet, executed as it stands.
"""
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from snnjax import functional, layer, neuron

ocp = pytest.importorskip("orbax.checkpoint")

T, B, H, CLASSES = 3, 4, 6, 5


class Net(nnx.Module):
    """[T, B, 6, 6, 1] -> [T, B, 5] spikes."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = layer.SeqToANNContainer(
            layer.Conv2d(1, 4, 3, padding=1, bias=False, rngs=rngs), layer.BatchNorm2d(4))
        self.lif = neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m")
        self.drop = layer.Dropout(0.3, step_mode="m", rngs=rngs)
        self.fc = layer.SeqToANNContainer(layer.Flatten(), layer.Linear(4 * H * H, CLASSES,
                                                                        rngs=rngs))
        self.plif = neuron.ParametricLIFNode(init_tau=2.0, v_threshold=0.15, step_mode="m")

    def __call__(self, x_seq):
        return self.plif(self.fc(self.drop(self.lif(self.conv(x_seq)))))


def _create():                   # as the README snippet's create()
    model = Net(rngs=nnx.Rngs(0))
    return model, nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)


def _batches(n):
    rng = np.random.default_rng(0)
    x = rng.random((n, T, B, H, H, 1), np.float32) * 2.0
    y = rng.integers(0, CLASSES, (n, B)).astype(np.int32)
    return x, y


@nnx.jit
def _train_step(model, optimizer, x_seq, labels):
    def loss_fn(model):
        return functional.temporal_efficient_training_cross_entropy(model(x_seq) * 4.0, labels)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def _train(model, optimizer, x, y, steps):
    losses = []
    for k in steps:
        if k % 2 == 0:    # a new sequence: states back to their initial values (reset_net), at
            functional.init_net_state(model, x[k])   # the batch's shapes: one compiled step
        losses.append(float(_train_step(model, optimizer, x[k], y[k])))
    return losses


def _readme_snippet():
    """The README's "Checkpoints with Orbax" code block (the one saving the optimizer too)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if "nnx.to_pure_dict(nnx.state(optimizer))" in b]
    assert len(found) == 1, "README: the checkpoint snippet is missing or not unique"
    return found[0]


def _save_and_restore(model, optimizer, path):
    """Run the README snippet on ``model``, ``optimizer``: returns the restored pair."""
    namespace = {"nnx": nnx, "optax": optax, "Net": Net, "model": model,
                 "optimizer": optimizer, "path": path}
    exec(_readme_snippet(), namespace)
    assert namespace["model"] is not model and namespace["optimizer"] is not optimizer
    return namespace["model"], namespace["optimizer"]


def _uncommitted(*objs):
    """Orbax restores arrays committed to a device, and ``jit`` keys its cache on that; as NumPy
    (keys: from their data) the restored run reuses the uninterrupted run's compiled step after
    its own first step (that one compiles anew: the abstract model's static per-state ``ndim``
    bookkeeping differs from a used model's). Compile time only: the values are the same."""
    def plain(a):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(np.asarray(jax.random.key_data(a)),
                                            impl=jax.random.key_impl(a))
        return np.asarray(a)
    for obj in objs:
        nnx.update(obj, jax.tree.map(plain, nnx.state(obj)))


def _leaves(*objs):
    return jax.tree_util.tree_flatten_with_path(
        [nnx.to_pure_dict(nnx.state(o)) for o in objs])[0]


def _assert_same_state(a, b):
    la, lb = _leaves(*a), _leaves(*b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, u), (_, v) in zip(la, lb):
        if jnp.issubdtype(jnp.asarray(u).dtype, jax.dtypes.prng_key):
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v),
                                      err_msg=jax.tree_util.keystr(path))


def test_resumed_training_is_bit_identical(tmp_path):
    x, y = _batches(6)
    model, optimizer = _create()
    losses = _train(model, optimizer, x, y, range(3))     # 1.5 sequences: stop mid-sequence
    restored_model, restored_optimizer = _save_and_restore(model, optimizer, tmp_path)
    assert (tmp_path / "step_100").is_dir()

    # what the checkpoint holds is not trivial: each part changes what follows
    assert model.lif.v.shape == (B, H, H, 4) and np.any(np.asarray(model.lif.v) != 0)
    assert model.plif.v.shape == (B, CLASSES)
    mask = np.asarray(model.drop.mask)
    assert mask.shape == (B, H, H, 4) and (mask == 0).any() and (mask != 0).any()
    assert int(model.drop.drawn.get_value()) == 1
    assert np.any(np.asarray(model.conv.layers[1].running_mean) != 0)
    assert int(model.conv.layers[1].num_batches_tracked.get_value()) == 3
    assert float(model.plif.w) != pytest.approx(0.0)        # trained away from -log(1) = 0
    assert int(optimizer.step.get_value()) == 3
    adam = {jax.tree_util.keystr(p): np.asarray(v) for p, v in _leaves(optimizer)}
    assert [int(v) for k, v in adam.items() if "count" in k] == [3]
    for moment in ("mu", "nu"):     # Adam's moments of every parameter, PLIF's w included
        assert any(moment in k and "plif" in k and np.all(v != 0) for k, v in adam.items())

    _assert_same_state((restored_model, restored_optimizer), (model, optimizer))
    _uncommitted(restored_model, restored_optimizer)

    # the second chunk of this sequence, then a new sequence (a new dropout mask from the RNG)
    expected = _train(model, optimizer, x, y, range(3, 6))
    resumed = _train(restored_model, restored_optimizer, x, y, range(3, 6))
    np.testing.assert_array_equal(resumed, expected)
    _assert_same_state((restored_model, restored_optimizer), (model, optimizer))
    assert len(set(losses + expected)) == 6                  # it trains: every loss differs

    # at a sequence boundary the states are scalars: the README's typed form restores too
    functional.reset_net(model)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "typed", {"model": nnx.state(model),
                                           "optimizer": nnx.state(optimizer)})
    checkpointer.wait_until_finished()
    abstract_model, abstract_optimizer = nnx.eval_shape(_create)
    graphdef_m, state_m = nnx.split(abstract_model)
    graphdef_o, state_o = nnx.split(abstract_optimizer)
    restored = checkpointer.restore(tmp_path / "typed", {"model": state_m, "optimizer": state_o})
    _assert_same_state((nnx.merge(graphdef_m, restored["model"]),
                        nnx.merge(graphdef_o, restored["optimizer"])), (model, optimizer))


def _restored_into_abstract(model, create, path):
    """``model`` saved as a pure dict, restored into ``nnx.eval_shape(create)``."""
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, nnx.to_pure_dict(nnx.state(model)))
    checkpointer.wait_until_finished()
    graphdef, state = nnx.split(nnx.eval_shape(create))
    nnx.replace_by_pure_dict(state, checkpointer.restore(path))
    return nnx.merge(graphdef, state)


def test_reset_after_restoring_a_mid_sequence_checkpoint_gives_scalar_states(tmp_path):
    def create():
        return nnx.Sequential(neuron.LIFNode(step_mode="m"))
    model = create()
    model(jnp.ones((2, 3, 4)))                               # v: [3, 4]
    restored = _restored_into_abstract(model, create, tmp_path / "mid")
    np.testing.assert_array_equal(restored.layers[0].v.get_value(), model.layers[0].v.get_value())
    functional.reset_net(restored)
    assert restored.layers[0].v.shape == ()                  # as reset_net(model) gives
    assert restored(jnp.ones((2, 5, 4))).shape == (2, 5, 4)  # another batch size


def test_a_stack_restored_mid_sequence_resets_to_its_layer_axis(tmp_path):
    """A stack of layers made with ``nnx.vmap``, run over a batch, saved, restored into the
    abstract stack: ``reset_net`` keeps the layer axis and drops the batch's (the stack marker
    travels with the state); the same for a stack made with plain ``jax.vmap``."""
    L = 3

    def create():
        return nnx.vmap(lambda _: neuron.LIFNode(step_mode="m"), in_axes=0,
                        out_axes=0)(jnp.arange(L))
    stack = create()

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def forward(layer, h):
        return layer(h) + 0.5 * h

    forward(stack, jnp.ones((2, 5, 4)) * 1.5)
    assert stack.v.shape == (L, 5, 4)
    restored = _restored_into_abstract(stack, create, tmp_path / "stack")
    np.testing.assert_array_equal(restored.v.get_value(), stack.v.get_value())
    functional.reset_net(restored)
    assert restored.v.shape == (L,) and not np.asarray(restored.v.get_value()).any()
    assert forward(restored, jnp.ones((2, 7, 4))).shape == (2, 7, 4)   # another batch size

    graphdef1, _ = nnx.split(neuron.LIFNode(step_mode="m"))
    states = jax.vmap(lambda _: nnx.split(neuron.LIFNode(step_mode="m"))[1])(jnp.arange(L))
    plain = nnx.merge(graphdef1, states)
    forward(plain, jnp.ones((2, 5, 4)))
    functional.reset_net(plain)
    assert plain.v.shape == (L,)
