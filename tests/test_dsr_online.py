"""DSRIFNode / DSRLIFNode and OTTTLIFNode / SLTTLIFNode against SpikingJelly 2.0.0 data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import neuron, surrogate
from golden_utils import case_names

DSR = case_names("DSRIFNode") + case_names("DSRLIFNode")
ONLINE = case_names("OTTTLIFNode") + case_names("SLTTLIFNode")




# --- DSR --------------------------------------------------------------------------------------



def test_dsr_worked_examples():
    """Spec research-dsr-online.md worked examples (float32)."""
    m = neuron.DSRIFNode(T=4, v_threshold=1.0)
    x = jnp.asarray([[0.2, 1.5, -0.3], [0.6, 0.9, 0.1], [0.4, 1.2, 0.2], [0.1, 1.4, -0.2]])
    g = jnp.asarray([[1, 2, 3], [0.5, -1, 1], [2, 1, -1], [1, 1, 1.0]])
    out, pull = jax.vjp(lambda x, p: m.multi_step({}, x, p)[1], x, m.params())
    np.testing.assert_array_equal(out.ravel(), [0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0])
    gx, gp = jax.jit(pull)(g)
    np.testing.assert_allclose(gx, np.tile([1.125, 0, 0], (4, 1)))
    np.testing.assert_allclose(gp["v_threshold"], 3.0)
    assert gp["alpha"] == 0 and gp["v_threshold_grad_scaling"] == 0

    m = neuron.DSRLIFNode(T=3, v_threshold=0.5, delta_t=0.1)
    x = jnp.asarray([[8, 30], [9, 25], [12, 33.0]])
    g = jnp.asarray([[1, 2], [0.5, -1], [2, 1.0]])
    out, pull = jax.vjp(lambda x, p: m.multi_step({}, x, p)[1], x, m.params())
    np.testing.assert_allclose(out, np.full((3, 2), 5.0), rtol=1e-6)
    gx, gp = pull(g)
    np.testing.assert_allclose(gx, np.tile([0.591802, 0], (3, 1)), rtol=1e-5)
    np.testing.assert_allclose(gp["v_threshold"], 0.19521, rtol=1e-4)


@pytest.mark.parametrize("cls", [neuron.DSRIFNode, neuron.DSRLIFNode])
def test_dsr_threshold_clamp_and_scaling(cls):
    """Threshold below the bound: forward uses the bound, no gradient reaches it (at equality it
    does); the stateful call clamps the stored parameter in place; scaling multiplies dL/dtheta."""
    lb = 0.5
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 40, (4, 16)), jnp.float32)
    m = cls(T=4, v_threshold=1.0, v_threshold_lower_bound=lb)

    def loss(vt, scale=1.0):
        return m.multi_step({}, x, {"v_threshold": vt, "v_threshold_grad_scaling": scale})[1].sum()

    np.testing.assert_array_equal(
        m.multi_step({}, x, {"v_threshold": jnp.float32(0.1)})[1],
        m.multi_step({}, x, {"v_threshold": jnp.float32(lb)})[1])
    assert jax.grad(loss)(jnp.float32(0.1)) == 0
    g_eq = jax.grad(loss)(jnp.float32(lb))
    assert g_eq != 0
    np.testing.assert_allclose(jax.grad(loss)(jnp.float32(lb), 3.0), 3 * g_eq, rtol=1e-6)
    m.v_threshold.set_value(jnp.float32(0.1))
    m(x)
    assert float(m.v_threshold.get_value()) == lb


def test_dsr_fixed_threshold_vmap_dtype():
    m = neuron.DSRIFNode(T=3, v_threshold=1.0, v_threshold_training=False)
    assert not isinstance(m.v_threshold, nnx.Variable)
    assert not nnx.state(m, nnx.Param)
    xs = jnp.asarray(np.random.default_rng(1).normal(0.5, 1.0, (5, 3, 4)), jnp.float32)
    run = lambda x: m.multi_step({}, x)[1]  # noqa: E731
    batched = jax.vmap(run)(xs)
    for i in range(5):
        np.testing.assert_array_equal(batched[i], run(xs[i]))
    assert run(xs[0].astype(jnp.bfloat16)).dtype == jnp.bfloat16
    m(xs[0])
    assert m.state == {}  # no state kept


def test_dsr_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="T must be a positive int"):
        neuron.DSRIFNode(T=2.0)
    with pytest.raises(ValueError, match="step_mode must be one of"):
        neuron.DSRIFNode(step_mode="s")
    with pytest.raises(ValueError, match="alpha must be in"):
        neuron.DSRLIFNode(alpha=1.5)
    with pytest.raises(ValueError, match="v_threshold must be >= v_threshold_lower_bound"):
        neuron.DSRIFNode(v_threshold=0.001)
    with pytest.raises(ValueError, match="v_threshold_lower_bound must be > 0"):
        neuron.DSRIFNode(v_threshold_lower_bound=0.0)
    with pytest.raises(ValueError, match="delta_t must be > 0"):
        neuron.DSRLIFNode(delta_t=0.0)
    with pytest.raises(TypeError, match="v_threshold_training must be True or False"):
        neuron.DSRIFNode(v_threshold_training=None)
    m = neuron.DSRLIFNode(T=4)
    with pytest.raises(ValueError, match="must equal the constructor argument T=4"):
        m(jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="multi-step only"):
        m.step({}, jnp.ones((2,)))


# --- OTTT / SLTT ------------------------------------------------------------------------------

def _online(case, step_mode="s"):
    cls = getattr(neuron, case.meta["class"])
    return cls(**case.kwargs, step_mode=step_mode, deterministic=not case.meta["train_mode"])






def test_online_worked_examples_and_defaults():
    o, s = neuron.OTTTLIFNode(), neuron.SLTTLIFNode()
    assert (o.decay_input, o.v_reset, o.detach_reset) == (False, None, True)
    assert (s.decay_input, s.v_reset, s.detach_reset) == (True, 0.0, True)
    spikes, traces, sl = [], [], []
    for v in [1.2, 0.3, 0.9, 1.6]:
        sp, tr = o(jnp.asarray([v]))
        spikes.append(float(sp[0]))
        traces.append(float(tr[0]))
        sl.append(float(s(jnp.asarray([v]))[0]))
    assert spikes == [1, 0, 1, 1] and sl == [0, 0, 0, 1]
    np.testing.assert_allclose(traces, [1.0, 0.5, 1.25, 1.625])
    np.testing.assert_allclose(o.v, [0.65], rtol=1e-6)
    np.testing.assert_allclose(s.v, [0.0])


@pytest.mark.parametrize("cls", [neuron.OTTTLIFNode, neuron.SLTTLIFNode])
def test_online_gradient_is_local_in_time(cls):
    """Training: dS[t]/dX[t'] = 0 for t' != t; dS[t]/dX[t] = surrogate'(H - theta) * (1/tau
    with decay_input, else 1). An ordinary LIFNode has cross-time terms (sanity check)."""
    x = jnp.asarray(np.random.default_rng(2).normal(0.9, 0.6, (5, 3)), jnp.float32)
    m = cls(tau=2.0)
    lif = neuron.LIFNode(tau=2.0, decay_input=m.decay_input, v_reset=m.v_reset,
                         detach_reset=True)

    def spikes(mod, x):
        out = mod.multi_step(mod.init_state(x[0]), x)[1]
        return out[0] if isinstance(out, tuple) else out

    jac = jax.jacrev(lambda x: spikes(m, x))(x)  # [T, N, T, N]
    T = x.shape[0]
    off = np.asarray(jac) * (1 - np.eye(T))[:, None, :, None]
    assert not np.any(off)
    seq, _ = m.multi_step(m.init_state(x[0]), x, return_state_seq=True)
    v_prev = jnp.concatenate([m.init_state(x[0])["v"][None], seq["v"][:-1]])
    h = (v_prev + (x - v_prev) / 2.0) if m.decay_input else (v_prev - v_prev / 2.0 + x)
    scale = 0.5 if m.decay_input else 1.0
    diag = np.stack([np.diagonal(np.asarray(jac)[t, :, t, :]) for t in range(T)])
    np.testing.assert_allclose(diag, surrogate.Sigmoid().derivative(h - 1.0) * scale, rtol=1e-5)
    jl = np.asarray(jax.jacrev(lambda x: spikes(lif, x))(x))
    assert np.any(jl * (1 - np.eye(T))[:, None, :, None])


@pytest.mark.parametrize("cls", [neuron.OTTTLIFNode, neuron.SLTTLIFNode])
def test_online_train_eval_vmap(cls):
    """model.eval() switches to a hard step (even with another surrogate); vmap over a param."""
    x = jnp.asarray(np.random.default_rng(3).normal(0.8, 0.8, (6, 4)), jnp.float32)
    m = cls(surrogate_function=surrogate.ATan(), step_mode="m")
    assert m.training
    out_train = m(x)
    m.reset()
    m.eval()
    assert m.deterministic and not m.training
    out_eval = m(x)
    assert not isinstance(out_eval, tuple)
    spikes_train = out_train[0] if isinstance(out_train, tuple) else out_train
    np.testing.assert_array_equal(spikes_train, out_eval)  # same forward values
    g = jax.grad(lambda x: m.multi_step(m.init_state(x[0]), x)[1].sum())(x)
    assert not np.any(np.asarray(g))
    m.train()
    assert m.training
    taus = jnp.asarray([1.5, 2.0, 3.0])
    outs = jax.vmap(lambda t: m.multi_step(m.init_state(x[0]), x, {"tau": t}))(taus)[1]
    ref = m.multi_step(m.init_state(x[0]), x, {"tau": 2.0})[1]
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a[1], b), outs, ref)


def test_online_bad_arguments():
    with pytest.raises(ValueError, match="tau must be > 1"):
        neuron.OTTTLIFNode(tau=1.0)
    with pytest.raises(TypeError, match="deterministic must be True or False"):
        neuron.SLTTLIFNode(deterministic=None)
    with pytest.raises(ValueError, match="step_mode must be one of"):
        neuron.SLTTLIFNode(step_mode="t")
    with pytest.raises(TypeError, match="surrogate_function"):
        neuron.OTTTLIFNode(surrogate_function=3)


@pytest.mark.parametrize("cls", [neuron.OTTTLIFNode, neuron.SLTTLIFNode])
def test_online_fused_backend_matches_scan(cls):
    """The generated kernel (interpret mode on CPU) keeps the online semantics: same spikes,
    traces, states and (time-local) input gradients as the lax.scan reference."""
    x = jnp.asarray(np.random.default_rng(4).normal(0.9, 0.6, (5, 8)), jnp.float32)
    w = jnp.arange(1.0, 9.0)

    def run(backend):
        m = cls(backend=backend)

        def f(x):
            st, out = m.multi_step(m.init_state(x[0]), x)
            spikes = out[0] if isinstance(out, tuple) else out
            return (spikes * w).sum(), (out, st)
        return jax.value_and_grad(f, has_aux=True)(x)

    ref, fused = run("scan"), run("pallas")
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                           ref, fused)
