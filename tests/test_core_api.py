"""Pure API, transformations, dtypes, state hygiene, subclassing and errors of the core neurons."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import functional, neuron, steps, surrogate

KEY = jax.random.PRNGKey(0)
X = 1.2 * jax.random.normal(KEY, (6, 4, 3)) + 0.5          # [T, N, D]

SPIKING = {
    "IFNode": lambda **k: neuron.IFNode(**k),
    "LIFNode": lambda **k: neuron.LIFNode(**k),
    "ParametricLIFNode": lambda **k: neuron.ParametricLIFNode(**k),
    "SimpleIFNode": lambda **k: neuron.SimpleIFNode(**k),
    "SimpleLIFNode": lambda **k: neuron.SimpleLIFNode(2.0, True, **k),
}


def reference_lif(x, tau=2.0, vth=1.0, vr=0.0):
    """Independent numpy LIF (hard reset, decay_input) for the transformation tests."""
    v = np.zeros(x.shape[1:])
    spikes = []
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - vr)) / tau
        s = (h >= vth).astype(np.float64)
        v = s * vr + (1 - s) * h
        spikes.append(s)
    return np.stack(spikes), v


@pytest.mark.parametrize("name", sorted(SPIKING))
def test_single_step_equals_multi_step(name):
    m = SPIKING[name]()
    st_m, out_m = jax.jit(m.multi_step)(m.init_state(X[0]), X)
    st, outs = m.init_state(X[0]), []
    for t in range(X.shape[0]):
        st, o = jax.jit(m.step)(st, X[t])
        outs.append(o)
    np.testing.assert_array_equal(jnp.stack(outs), out_m)
    np.testing.assert_allclose(st["v"], st_m["v"], rtol=1e-6, atol=1e-7)
    # gradients agree too
    def loss_m(x):
        return jnp.sum(m.multi_step(m.init_state(x[0]), x)[1] * jnp.arange(x.size).reshape(x.shape))
    def loss_s(x):
        st, tot = m.init_state(x[0]), 0.0
        w = jnp.arange(x.size).reshape(x.shape)
        for t in range(x.shape[0]):
            st, o = m.step(st, x[t])
            tot = tot + jnp.sum(o * w[t])
        return tot
    np.testing.assert_allclose(jax.grad(loss_m)(X), jax.grad(loss_s)(X), rtol=1e-5, atol=1e-6)


def test_lif_matches_independent_numpy():
    m = neuron.LIFNode()
    _, out = m.multi_step(m.init_state(X[0]), X)
    ref, _ = reference_lif(np.asarray(X, np.float64))
    np.testing.assert_array_equal(out, ref)


def test_vmap_over_batch_of_neurons():
    m = neuron.LIFNode()
    xb = jnp.stack([X, X * 0.5, X + 0.3])                     # [B, T, N, D]
    f = jax.vmap(lambda x: m.multi_step(m.init_state(x[0]), x)[1])
    out = jax.jit(f)(xb)
    for b in range(3):
        np.testing.assert_array_equal(out[b], m.multi_step(m.init_state(X[0]), xb[b])[1])


def test_vmap_over_parameter_values():
    m = neuron.LIFNode()
    taus = jnp.asarray([1.5, 2.0, 4.0])
    vths = jnp.asarray([0.5, 1.0, 1.5])
    f = jax.vmap(lambda tau, vth: m.multi_step(m.init_state(X[0]), X,
                                               {"tau": tau, "v_threshold": vth})[1])
    out = jax.jit(f)(taus, vths)
    for i in range(3):
        ref, _ = reference_lif(np.asarray(X, np.float64), tau=float(taus[i]), vth=float(vths[i]))
        np.testing.assert_array_equal(out[i], ref)
    # per-neuron parameter arrays work without vmap too
    tau_arr = jnp.broadcast_to(jnp.asarray([1.5, 2.0, 4.0]), X.shape[1:])
    out_arr = m.multi_step(m.init_state(X[0]), X, {"tau": tau_arr})[1]
    for j in range(3):
        ref, _ = reference_lif(np.asarray(X[:, :, j], np.float64), tau=float(tau_arr[0, j]))
        np.testing.assert_array_equal(out_arr[:, :, j], ref)


def test_grad_wrt_traced_hyperparameter():
    """tau is an ordinary (traced) value of the step: it gets a finite gradient."""
    m = neuron.LIFNode()
    g = jax.grad(lambda tau: m.multi_step(m.init_state(X[0]), X, {"tau": tau})[1].sum())(2.0)
    assert np.isfinite(g) and g != 0


class TwoLayer(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(3, 8, rngs=rngs)
        self.sn1 = neuron.LIFNode(step_mode="m")
        self.fc2 = nnx.Linear(8, 2, rngs=rngs)
        self.sn2 = neuron.ParametricLIFNode(step_mode="m")

    def __call__(self, x_seq):
        h = functional.seq_to_ann_forward(x_seq, self.fc1)
        h = self.sn1(h)
        h = functional.seq_to_ann_forward(h, self.fc2)
        return self.sn2(h)


def test_grad_of_small_network_under_nnx_jit():
    model = TwoLayer(nnx.Rngs(0))

    @nnx.jit
    def loss_and_grad(model, x):
        def loss(model):
            functional.reset_net(model)
            return jnp.mean(model(x))
        return nnx.value_and_grad(loss)(model)

    x = 2.0 * jax.random.normal(KEY, (5, 7, 3)) + 1.0
    val, grads = loss_and_grad(model, x)
    assert np.isfinite(val)
    assert float(jnp.abs(grads["fc1"]["kernel"].get_value()).sum()) > 0
    assert np.isfinite(float(grads["sn2"]["w"].get_value()))
    # same value from a second call (state was reset inside)
    val2, _ = loss_and_grad(model, x)
    assert float(val2) == float(val)
    # finite differences on a PLIF w confirm the surrogate-free direction is sane
    assert model.sn1.v.shape == (7, 8)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs_use_fp32_state(dtype):
    m = neuron.LIFNode()
    x = X.astype(dtype)
    st, out = jax.jit(m.multi_step)(m.init_state(x[0]), x)
    assert out.dtype == dtype and st["v"].dtype == jnp.float32
    _, out32 = m.multi_step(m.init_state(X[0]), x.astype(jnp.float32))
    # the input is rounded to `dtype` once; everything after is fp32, so spikes agree exactly
    np.testing.assert_array_equal(out.astype(jnp.float32), out32)
    g = jax.grad(lambda x: m.multi_step(m.init_state(x[0]), x)[1].astype(jnp.float32).sum())(x)
    g32 = jax.grad(lambda x: m.multi_step(m.init_state(x[0]), x)[1].sum())(x.astype(jnp.float32))
    assert g.dtype == dtype
    # stated tolerance: one rounding of the fp32 gradient to `dtype`
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(g.astype(jnp.float32), g32, rtol=eps, atol=eps)


def test_stateful_shape_change_raises_until_reset():
    m = neuron.LIFNode(step_mode="m")
    m(X)
    with pytest.raises(ValueError, match="reset_net"):
        m(X[:, :2])
    functional.reset_net(m)
    assert m(X[:, :2]).shape == X[:, :2].shape


def test_stateful_calls_continue_state():
    m = neuron.LIFNode(step_mode="m")
    a = m(X[:3])
    b = m(X[3:])
    ref = neuron.LIFNode(step_mode="m")(X)
    np.testing.assert_array_equal(jnp.concatenate([a, b]), ref)


def test_store_v_seq_and_detach_and_set_step_mode():
    m = neuron.LIFNode(step_mode="m", store_v_seq=True)
    m(X)
    assert m.v_seq.shape == X.shape
    np.testing.assert_array_equal(m.v_seq[-1], m.v)
    functional.detach_net(m)
    functional.reset_net(m)
    assert m.v_seq is None and m.v.shape == () and float(m.v) == 0.0   # back to the declared initial value
    functional.set_step_mode(m, "s")
    assert m.step_mode == "s"
    for t in range(3):
        m(X[t])
    assert m.v_seq.shape == (3,) + X.shape[1:]
    with pytest.raises(ValueError, match="step_mode"):
        functional.set_step_mode(m, "x")


def test_functional_helpers():
    lin = nnx.Linear(3, 5, rngs=nnx.Rngs(1))
    y = functional.seq_to_ann_forward(X, lin)
    np.testing.assert_allclose(y, jax.vmap(lin)(X), rtol=1e-6)
    sn = neuron.IFNode()
    out = functional.multi_step_forward(X, sn)
    np.testing.assert_array_equal(out, neuron.IFNode(step_mode="m")(X))
    ms = neuron.IFNode(step_mode="m")
    out = functional.chunk_multi_step_forward(4, X, ms)
    np.testing.assert_array_equal(out, neuron.IFNode(step_mode="m")(X))
    with pytest.raises(ValueError, match="same T and B"):
        functional.seq_to_ann_forward((X, X[:, :2]), lambda a, b: a)


def test_custom_neuron_by_charge_equation():
    class QuadIF(neuron.BaseNode):
        def neuronal_charge(self, v, x, params):
            return v + x * x

    m = QuadIF(step_mode="m", v_reset=None)
    _, out = m.multi_step(m.init_state(X[0]), X)
    v, ref = np.zeros(X.shape[1:]), []
    for t in range(X.shape[0]):
        h = v + np.asarray(X[t], np.float64) ** 2
        s = (h >= 1.0).astype(np.float64)
        v = h - s
        ref.append(s)
    np.testing.assert_array_equal(out, np.stack(ref))


def resonator_step(state, x, params, *, surrogate):
    """Two-state custom neuron written as a whole step."""
    u = 0.9 * state["u"] + 0.1 * state["v"]
    h = state["v"] + x - u
    v, s = steps.fire_and_reset(h, params, surrogate=surrogate, soft_reset=False,
                                detach_reset=False)
    return {"v": v, "u": u}, s


def test_custom_neuron_by_full_step():
    class Resonator(neuron.BaseNode):
        step_fn = staticmethod(resonator_step)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.register_memory("u", 0.0)

        def step_config(self):
            return {"surrogate": self.surrogate_function}

    m = Resonator(step_mode="m")
    out = m(X)
    assert set(m.state) == {"v", "u"} and out.shape == X.shape
    v, u, ref = np.zeros(X.shape[1:]), np.zeros(X.shape[1:]), []
    for t in range(X.shape[0]):
        u = 0.9 * u + 0.1 * v
        h = v + np.asarray(X[t], np.float64) - u
        s = (h >= 1.0).astype(np.float64)
        v = s * 0.0 + (1 - s) * h
        ref.append(s)
    np.testing.assert_array_equal(out, np.stack(ref))
    g = jax.grad(lambda x: m.multi_step(m.init_state(x[0]), x)[1].sum())(X)
    assert np.all(np.isfinite(g))


def test_whole_step_override_is_refused_with_instructions():
    with pytest.raises(TypeError, match="step_fn"):
        class Old(neuron.BaseNode):
            def single_step_functional(self, state, x, params):
                return state, x


def test_nonspiking_reference_vectors():
    x = jnp.asarray([[1.0, -2.0], [-3.0, 1.0], [0.5, 0.5]])
    expect = {"max-mem": [1, -0.5], "max-abs-mem": [-2, -2], "mean-mem": [-0.8333333, -1.1666666],
              "last_mem": [-1.5, -0.5]}
    for decode, want in expect.items():
        np.testing.assert_allclose(neuron.NonSpikingIFNode(decode=decode)(x), want, rtol=1e-6)
    np.testing.assert_allclose(neuron.NonSpikingLIFNode(decode="max-abs-mem")(x), [-1.25, -1])
    assert neuron.NonSpikingIFNode()(x).shape == (3, 2)   # decode=None: stacked, not a list


def test_max_mem_gradient_goes_to_first_maximum():
    x = jnp.asarray([[1.0], [0.0], [-1.0], [1.0]])        # potentials 1, 1, 0, 1: ties at t=0,1,3
    g = jax.grad(lambda x: neuron.NonSpikingIFNode(decode="max-mem")(x).sum())(x)
    # V[t] = sum_{k<=t} x[k]; the first maximum is t=0, which depends on x[0] only
    np.testing.assert_array_equal(g[:, 0], [1, 0, 0, 0])


@pytest.mark.parametrize("ctor, match", [
    (lambda: neuron.LIFNode(tau=1.0), "tau must be > 1.0"),
    (lambda: neuron.LIFNode(tau="2"), "tau must be a real number"),
    (lambda: neuron.IFNode(v_threshold="high"), "v_threshold must be a real number"),
    (lambda: neuron.IFNode(v_reset=[0.0]), "v_reset must be a real number"),
    (lambda: neuron.IFNode(detach_reset=1), "detach_reset must be True or False"),
    (lambda: neuron.IFNode(step_mode="multi"), r"step_mode must be one of \('s', 'm'\)"),
    (lambda: neuron.IFNode(surrogate_function="NoSuchSurrogate"), "NoSuchSurrogate"),
    (lambda: neuron.IFNode(surrogate_function=3.0), "surrogate_function must be"),
    (lambda: neuron.ParametricLIFNode(init_tau=0.5), "init_tau must be > 1.0"),
    (lambda: neuron.NonSpikingIFNode(decode="last-membrane"), "decode must be one of"),
    (lambda: neuron.SimpleLIFNode(2.0, True, v_reset=None), "v_reset=None"),
    (lambda: neuron.LIFNode(backend="cuda"), "backend must be one of"),
])
def test_bad_arguments(ctor, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ctor()


def test_wrong_rank_and_unknown_params():
    m = neuron.LIFNode(step_mode="m")
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        m(jnp.ones(5))
    with pytest.raises(ValueError, match="T = 0"):
        m(jnp.ones((0, 3)))
    with pytest.raises(ValueError, match="unknown params"):
        m.multi_step(m.init_state(X[0]), X, {"taus": 3.0})


def test_surrogate_by_name_and_spiking_false():
    m = neuron.LIFNode(surrogate_function="ATan", step_mode="m")
    assert m.surrogate_function == surrogate.ATan()
    soft = neuron.IFNode(surrogate_function=surrogate.Sigmoid(spiking=False), step_mode="m")
    out = soft(X)
    assert np.all((out > 0) & (out < 1))    # real-valued "spikes"


def test_jit_grad_vmap_on_multi_step_directly():
    m = neuron.ParametricLIFNode()
    s0 = m.init_state(X[0])
    jax.jit(m.multi_step)(s0, X)
    gx = jax.grad(lambda x: m.multi_step(s0, x)[1].sum())(X)
    gw = jax.grad(lambda w: m.multi_step(s0, X, {"w": w})[1].sum())(m.w.get_value())
    assert gx.shape == X.shape and gw.shape == ()
    out = jax.vmap(m.multi_step, in_axes=(0, 1), out_axes=(0, 1))(s0, X)
    np.testing.assert_array_equal(out[1], m.multi_step(s0, X)[1])
