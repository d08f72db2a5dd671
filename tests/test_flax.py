"""Neurons inside Flax NNX: split/merge, eval_shape, jit, vmapped stacks, scan over layers and over
time, Orbax checkpoints, and the SpikingJelly state idioms (``node.v``, ``reset_net``)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import functional, neuron, surrogate


class Net(nnx.Module):
    def __init__(self, step_mode="m", *, rngs, backend="scan", record=True):
        self.fc1 = nnx.Linear(6, 8, rngs=rngs)
        self.lif1 = neuron.LIFNode(tau=2.0, step_mode=step_mode, backend=backend)
        self.fc2 = nnx.Linear(8, 3, rngs=rngs)
        self.lif2 = neuron.ParametricLIFNode(step_mode=step_mode, store_v_seq=record,
                                             backend=backend)

    def __call__(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


def _x(T=5, B=4):
    return jax.random.normal(jax.random.PRNGKey(1), (T, B, 6)) * 2.0


def _tree_struct(model):
    return jax.tree_util.tree_structure(nnx.state(model))


def test_state_exists_before_the_first_call():
    lif = neuron.LIFNode()
    assert float(lif.v) == 0.0 and lif.v == 0.0
    assert float(neuron.IFNode(v_reset=-0.5).v) == -0.5
    assert float(neuron.HalfThresholdIFNode(v_threshold=3.0).v) == 1.5
    assert neuron.CUBALIFNode().c == 0.0


def test_eval_shape_has_the_pytree_of_a_used_model():
    abstract = nnx.eval_shape(lambda: Net(rngs=nnx.Rngs(0)))
    model = Net(rngs=nnx.Rngs(0))
    assert _tree_struct(abstract) == _tree_struct(model)
    model(_x())
    assert _tree_struct(abstract) == _tree_struct(model)
    functional.reset_net(model)
    assert _tree_struct(abstract) == _tree_struct(model)
    assert model.lif1.v.shape == () and model.lif2.v_seq is None


def test_split_merge_round_trip_gives_identical_outputs():
    model = Net(rngs=nnx.Rngs(0))
    x = _x()
    ref = model(x)
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state)
    functional.reset_net(copy)
    functional.reset_net(model)
    np.testing.assert_array_equal(copy(x), ref)
    np.testing.assert_array_equal(model(x), ref)


def test_nnx_jit_training_step_matches_eager():
    model = Net(rngs=nnx.Rngs(0))
    x = _x()

    def loss(m, x):
        functional.reset_net(m)
        return jnp.mean(m(x) * jnp.arange(3.0))

    eager = nnx.grad(loss)(model, x)
    jitted = nnx.jit(nnx.grad(loss))(model, x)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert abs(float(jitted["lif2"]["w"].get_value())) > 0


def test_assigning_v_sets_the_initial_membrane():
    x = _x()[:, :, :3]
    lif = neuron.LIFNode(step_mode="m")
    v0 = jnp.linspace(-0.5, 0.9, 3)          # broadcasts to [B, 3]
    lif.v = v0
    out = lif(x)
    ref_state, ref_out = lif.multi_step({"v": jnp.broadcast_to(v0, x.shape[1:])}, x)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(lif.v.get_value(), ref_state["v"])
    with pytest.raises(ValueError, match="reset_net"):
        lif(x[:, :2])                          # a state left by a call must match exactly
    functional.reset_net(lif)
    lif(x[:, :2])
    lif.v = jnp.zeros((5,))
    with pytest.raises(ValueError, match=r"v of shape \(5,\) does not broadcast"):
        lif(x)


@pytest.mark.parametrize("backend", ["scan", "pallas"])
def test_pure_api_state_rules_on_every_backend(backend):
    x = _x()[:, :, :3]
    lif = neuron.LIFNode(backend=backend)
    s_b, out_b = lif.multi_step({"v": jnp.asarray(0.3)}, x)        # a scalar broadcasts
    s_f, out_f = lif.multi_step({"v": jnp.full(x.shape[1:], 0.3)}, x)
    np.testing.assert_array_equal(out_b, out_f)
    with pytest.raises(ValueError, match=r"v of shape \(2,\) does not broadcast"):
        lif.multi_step({"v": jnp.zeros((2,))}, x)
    with pytest.raises(ValueError, match="must hold the variables"):
        lif.multi_step({"u": jnp.zeros(x.shape[1:])}, x)


@pytest.mark.parametrize("backend", ["scan", "pallas"])
def test_reassigned_hyperparameters_take_effect(backend):
    x = _x()[:, :, :3]
    lif = neuron.LIFNode(step_mode="m", backend=backend)
    first = lif(x)
    functional.reset_net(lif)
    lif.tau = 4.0
    lif.surrogate_function = surrogate.ATan(3.0)
    second = lif(x)
    ref = neuron.LIFNode(tau=4.0, surrogate_function=surrogate.ATan(3.0), step_mode="m",
                         backend="scan")(x)
    np.testing.assert_array_equal(second, ref)
    assert not np.array_equal(first, second)
    with pytest.raises(ValueError, match="LIFNode: tau must be > 1.0, got 0.5"):
        lif.tau = 0.5
    with pytest.raises(TypeError, match="call it"):
        lif.surrogate_function = surrogate.ATan


def test_vmapped_stack_scan_over_layers_and_reset_keeps_layer_axis():
    L, x = 3, _x()[:, :, :4]

    @nnx.vmap(in_axes=0, out_axes=0)
    def make(tau):
        return neuron.LIFNode(step_mode="m", backend="scan")

    stack = make(jnp.arange(L))
    assert stack.v.shape == (L,)

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def forward(layer, h):
        return layer(h) + 0.5 * h

    out = forward(stack, x)
    assert stack.v.shape == (L,) + x.shape[1:]
    h = x
    for _ in range(L):                      # the same layers, one by one
        h = neuron.LIFNode(step_mode="m", backend="scan")(h) + 0.5 * h
    np.testing.assert_allclose(out, h, rtol=1e-6)
    functional.reset_net(stack)
    assert stack.v.shape == (L,) and float(jnp.abs(stack.v.get_value()).sum()) == 0.0


@jax.default_matmul_precision("float32")   # GPUs default to TF32: per-step vs batched matmuls
def test_scan_over_time_with_the_model_in_the_carry():
    x = _x()
    model_s = Net("s", rngs=nnx.Rngs(0), record=False)   # a growing v_seq cannot be a carry
    model_m = Net("m", rngs=nnx.Rngs(0))
    functional.init_net_state(model_s, x[0])
    assert model_s.lif1.v.shape == (4, 8) and model_s.lif2.v.shape == (4, 3)

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def run(model, x_t):
        return model, model(x_t)

    _, out = run(model_s, x)
    np.testing.assert_array_equal(out, model_m(x))
    np.testing.assert_allclose(model_s.lif2.v.get_value(), model_m.lif2.v.get_value(), rtol=1e-6)


def test_init_net_state_avoids_a_retrace():
    model = Net(rngs=nnx.Rngs(0))
    x = _x()
    functional.init_net_state(model, x)
    traces = []

    @nnx.jit
    def f(m, x):
        traces.append(1)
        return m(x)

    f(model, x)
    f(model, x)
    assert len(traces) == 1


@pytest.mark.parametrize("when", ["after_reset", "after_forward"])
def test_orbax_restore_gives_identical_outputs(tmp_path, when):
    ocp = pytest.importorskip("orbax.checkpoint")
    x = _x()
    model = Net(rngs=nnx.Rngs(3))
    model(x)                                # a trained model holds the state of its last batch
    if when == "after_reset":
        functional.reset_net(model)
    _, state = nnx.split(model)
    checkpointer = ocp.StandardCheckpointer()
    abstract = nnx.eval_shape(lambda: Net(rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    if when == "after_reset":               # the Flax guide's recipe: restore into eval_shape
        checkpointer.save(tmp_path / "state", state)
        checkpointer.wait_until_finished()
        restored = nnx.merge(graphdef, checkpointer.restore(tmp_path / "state", abstract_state))
    else:                                   # at any point: through a pure dict
        checkpointer.save(tmp_path / "pure", nnx.to_pure_dict(state))
        checkpointer.wait_until_finished()
        nnx.replace_by_pure_dict(abstract_state, checkpointer.restore(tmp_path / "pure"))
        restored = nnx.merge(graphdef, abstract_state)
        np.testing.assert_array_equal(restored.lif1.v.get_value(), model.lif1.v.get_value())
    expected = model(x)                     # both continue from the saved state
    np.testing.assert_array_equal(restored(x), expected)
    np.testing.assert_array_equal(restored.lif2.v_seq, model.lif2.v_seq)


class ChargeAsReference(neuron.BaseNode):
    """A ported SpikingJelly neuron: reads and assigns ``self.v``."""

    def __init__(self, tau=2.0, **kw):
        super().__init__(**kw)
        self.tau = tau

    def neuronal_charge(self, x):
        self.v = self.v + (x - self.v) / self.tau


class ChargeAsSnnjax(neuron.BaseNode):
    def neuronal_charge(self, v, x, params):
        return v + (x - v) / 2.0


@pytest.mark.parametrize("cls", [ChargeAsReference, ChargeAsSnnjax])
@pytest.mark.parametrize("backend", ["scan", "pallas"])
def test_custom_neuronal_charge_is_a_working_neuron(cls, backend):
    x = _x()[:, :, :3]
    out = cls(step_mode="m", backend=backend)(x)
    ref = neuron.LIFNode(tau=2.0, step_mode="m", backend="scan")(x)
    np.testing.assert_array_equal(out, ref)
    g = jax.grad(lambda x: cls(step_mode="m", backend=backend)(x).sum())(x)
    g_ref = jax.grad(lambda x: neuron.LIFNode(step_mode="m", backend="scan")(x).sum())(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)


def test_template_method_overrides_are_refused_at_class_creation():
    with pytest.raises(TypeError, match="FlexSN.from_step"):
        class Bad(neuron.BaseNode):
            def neuronal_fire(self):
                return self.v > 1


def test_mro_depth():
    import inspect
    for name in neuron.__all__:
        cls = getattr(neuron, name)
        if inspect.isclass(cls):
            ours = [k for k in cls.__mro__ if k.__module__.startswith("snnjax")]
            assert len(ours) <= 5, (name, [k.__name__ for k in ours])
