"""HalfThresholdIFNode, ILIFNode, ComplementaryLIFNode against SpikingJelly 2.0.0 data, plus
transformations, train/eval and argument errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import kernels, neuron, surrogate
from golden_utils import case_names, load_case

CLASSES = ["HalfThresholdIFNode", "ILIFNode", "ComplementaryLIFNode"]
CASES = [n for c in CLASSES for n in case_names(c)]


def _make(case, **kw):
    cls = getattr(neuron, case.meta["class"])
    if case.meta["class"] == "ComplementaryLIFNode":
        kw["deterministic"] = not case.meta["train_mode"]
    return cls(**case.kwargs, **kw)








def test_half_threshold_initial_state_and_reset():
    m = neuron.HalfThresholdIFNode(v_threshold=0.8, step_mode="m")
    np.testing.assert_allclose(m.init_state(jnp.zeros(3))["v"], 0.4)
    m(jnp.ones((2, 3)))
    m.reset()
    out = m(jnp.full((1, 3), 0.4))  # 0.4 + 0.4 reaches the threshold only from theta / 2
    np.testing.assert_array_equal(out, 1.0)
    assert neuron.HalfThresholdIFNode(jnp.asarray(0.5)).v_threshold == 0.5
    assert neuron.HalfThresholdIFNode().soft_reset


def test_ilif_counts_and_window():
    m = neuron.ILIFNode()
    assert m.tau == pytest.approx(4 / 3) and m.soft_reset and not m.decay_input
    x = jnp.asarray([[0.4], [2.6], [9.0]])
    st, out = m.multi_step(m.init_state(x[0]), x)
    assert set(np.unique(np.asarray(out))) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert float(out[2, 0]) == 4.0  # clipped at max_spike_count
    g = jax.grad(lambda x: jnp.sum(m.multi_step(m.init_state(x[0]), x)[1][2]))(x)
    assert float(g[2, 0]) == 0.0  # H / theta beyond grad_max: no gradient


def test_clif_train_eval():
    case = load_case("ComplementaryLIFNode__default_train")
    x = jnp.asarray(case["x"], jnp.float32)
    m = neuron.ComplementaryLIFNode(step_mode="m")
    assert m.training and m.surrogate_function == surrogate.Rect(alpha=1.0)

    def loss(x):
        return jnp.sum(m.multi_step(m.init_state(x[0]), x)[1])

    assert np.any(np.asarray(jax.grad(loss)(x)) != 0)
    m.eval()
    assert not m.training
    np.testing.assert_array_equal(jax.grad(loss)(x), 0.0)
    m.train()
    assert m.training




X = 1.3 * jax.random.normal(jax.random.PRNGKey(2), (6, 5)) + 0.6


def _half_threshold_state(m, p):
    # the initial membrane theta / 2 belongs to the state, so a threshold population starts there
    return {"v": jnp.full(X.shape[1:], p["v_threshold"] / 2)}


@pytest.mark.parametrize("make, pop, state", [
    (lambda **k: neuron.HalfThresholdIFNode(**k), {"v_threshold": [0.5, 1.0, 1.5]},
     _half_threshold_state),
    (lambda **k: neuron.ILIFNode(**k), {"tau": [1.2, 2.0, 4.0], "v_threshold": [0.5, 1.0, 0.8]},
     None),
    (lambda **k: neuron.ComplementaryLIFNode(**k), {"tau": [1.5, 2.0, 4.0]}, None),
])
def test_vmap_over_hyperparameters(make, pop, state):
    m = make()
    arrays = {k: jnp.asarray(v, jnp.float32) for k, v in pop.items()}
    state = state or (lambda m, p: m.init_state(X[0]))
    st, out = jax.jit(jax.vmap(lambda p: m.multi_step(state(m, p), X, p)))(arrays)
    for i in range(3):
        r = make(**{k: v[i] for k, v in pop.items()})
        st_i, out_i = r.multi_step(r.init_state(X[0]), X)
        np.testing.assert_array_equal(out[i], out_i)
        for k in st_i:
            np.testing.assert_allclose(st[k][i], st_i[k], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [neuron.HalfThresholdIFNode, neuron.ILIFNode,
                                  neuron.ComplementaryLIFNode])
def test_single_step_equals_multi_step_and_elementwise(make):
    m = make()
    w = jnp.arange(X.size, dtype=jnp.float32).reshape(X.shape) / X.size

    def loss_m(x):
        return jnp.sum(m.multi_step(m.init_state(x[0]), x)[1] * w)

    def loss_s(x):
        st, tot = m.init_state(x[0]), 0.0
        for t in range(x.shape[0]):
            st, o = m.step(st, x[t])
            tot = tot + jnp.sum(o * w[t])
        return tot

    np.testing.assert_allclose(jax.jit(jax.grad(loss_m))(X), jax.grad(loss_s)(X), rtol=1e-5,
                               atol=1e-6)
    kernels.check_step(m.bound_step(), m.init_state(X[0]), X, m.params(),
                       kernels.Config())


@pytest.mark.parametrize("make, exc, match", [
    (lambda: neuron.HalfThresholdIFNode(v_threshold=0.0), ValueError, "v_threshold"),
    (lambda: neuron.HalfThresholdIFNode(v_threshold=float("inf")), ValueError, "v_threshold"),
    (lambda: neuron.HalfThresholdIFNode(v_threshold=jnp.ones(2)), ValueError, "v_threshold"),
    (lambda: neuron.ILIFNode(surrogate_function=surrogate.Sigmoid()), ValueError,
     "MultiLevelSpikeCount"),
    (lambda: neuron.ILIFNode(surrogate_function=surrogate.MultiLevelSpikeCount(2, spiking=False)),
     ValueError, "spiking"),
    (lambda: neuron.ILIFNode(tau=1.0), ValueError, "tau"),
    (lambda: neuron.ComplementaryLIFNode(tau=0.5), ValueError, "tau"),
    (lambda: neuron.ComplementaryLIFNode(store_state_seqs="y"), TypeError, "store_state_seqs"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
