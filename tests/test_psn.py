"""PSN, MaskedPSN, SlidingPSN against SpikingJelly 2.0.0 data and the spec's reference vectors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import functional, neuron, steps
from snnjax import surrogate as sg
from golden_utils import case_names, learnable_params

CLASSES = ["PSN", "MaskedPSN", "SlidingPSN"]
CASES = [n for c in CLASSES for n in case_names(c)]


def _build(case, **over):
    cls = getattr(neuron, case.meta["class"])
    kwargs = {**case.kwargs, **over}
    module = cls(**kwargs, rngs=nnx.Rngs(1))
    if "lambda_" in case:
        module.lambda_ = case["lambda_"]
    return module


def _load_params(module, case):
    for name, value in learnable_params(case).items():
        getattr(module, name).set_value(value)


def _single_step_capable(case):
    return case.meta["class"] == "SlidingPSN" or (
        case.meta["class"] == "MaskedPSN" and float(case["lambda_"]) >= 1)












# --- spec section 7 reference vectors (float32) -------------------------------------------------

X7 = jnp.asarray([[0.5, -1, 2], [1.5, 0.25, -0.5], [-0.75, 1, 1.25], [2, -2, 0]], jnp.float32)
W7 = jnp.asarray([[0.9, 0.1, -0.2, 0.3], [0.4, 0.8, 0.5, -0.6], [-0.3, 0.7, 1.1, 0.2],
                  [0.05, -0.4, 0.6, 1.0]], jnp.float32)


def _grads(m, x):
    def loss(x, p):
        out = m.multi_step(m.init_state(x[0]), x, p)[1]
        return out.sum(), out
    return jax.grad(loss, argnums=(0, 1), has_aux=True)(x, m.params())


def test_reference_vectors_psn():
    m = neuron.PSN(4, rngs=nnx.Rngs(0))
    m.weight.set_value(W7)
    (gx, gp), s = _grads(m, X7)
    np.testing.assert_array_equal(s, [[1, 0, 1], [0, 1, 1], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(gx, [[0.403822, -0.101676, 0.635533],
                                    [-0.109426, 0.763508, 0.597766],
                                    [0.835643, 0.995301, 1.282833],
                                    [1.142412, 0.000071, 0.513032]], atol=2e-6)
    np.testing.assert_allclose(gp["bias"][:, 0], [0.755050, 1.350640, 1.271261, 1.985132],
                               atol=2e-6)
    np.testing.assert_allclose(gp["weight"][0], [0.789183, 0.538322, 0.034947, 0.877452],
                               atol=2e-6)


def test_reference_vectors_masked_psn():
    psn = neuron.PSN(4, rngs=nnx.Rngs(0))
    psn.weight.set_value(W7)
    (_, gp_psn), s_psn = _grads(psn, X7)
    m = neuron.MaskedPSN(2, 4, step_mode="m", rngs=nnx.Rngs(0))
    m.weight.set_value(W7)
    np.testing.assert_array_equal(m.mask0, [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0],
                                            [0, 0, 1, 1]])
    (_, gp), s = _grads(m, X7)                                      # lambda = 0: PSN
    np.testing.assert_array_equal(s, s_psn)
    np.testing.assert_allclose(gp["weight"], gp_psn["weight"], rtol=1e-6)
    m.lambda_ = 0.5
    (_, gp), s = _grads(m, X7)
    np.testing.assert_array_equal(s, [[0, 0, 1], [0, 0, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(gp["weight"][1], [0.850216, 0.442165, 0.419459, -0.049785],
                               atol=2e-6)
    for lam in (1.0, 2.0):                                           # > 1 behaves as 1
        m.lambda_ = lam
        (_, gp), s = _grads(m, X7)
        np.testing.assert_array_equal(s, [[0, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]])
        np.testing.assert_allclose(gp["weight"], [[0.371505, 0, 0, 0], [0.567392, 0.488208, 0, 0],
                                                  [0, -0.137267, 1.706689, 0],
                                                  [0, 0, 0.602215, 0.467239]], atol=2e-6)
        assert np.all(np.asarray(gp["weight"])[np.asarray(m.mask0) == 0] == 0)


def test_reference_vectors_sliding_psn():
    m = neuron.SlidingPSN(3, step_mode="m")
    np.testing.assert_array_equal(m.weight.get_value(), [0.25, 0.5, 1.0])
    (gx, gp), s = _grads(m, X7)
    np.testing.assert_array_equal(s, [[0, 0, 1], [1, 0, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(gx, [[0.393935, 0.271751, 0.308300],
                                    [0.234069, 0.498284, 0.504701],
                                    [0.162871, 0.874775, 0.432601],
                                    [0.092000, 0.016767, 0.288400]], atol=2e-6)
    np.testing.assert_allclose(gp["weight"], [-0.233164, 1.148194, 1.693172], atol=2e-6)
    np.testing.assert_allclose(gp["bias"], 2.575866, atol=2e-6)
    a = np.asarray(neuron.SlidingPSN(3).gen_gemm_weight(5))      # spec 4.3: banded Toeplitz
    np.testing.assert_array_equal(a[0], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(a[1], [0.5, 1, 0, 0, 0])
    np.testing.assert_array_equal(a[3], [0, 0.25, 0.5, 1, 0])


# --- construction, initialisation --------------------------------------------------------------

def test_parameters_and_init():
    m = neuron.PSN(T=16, rngs=nnx.Rngs(0))
    w = np.asarray(m.weight.get_value())
    assert w.shape == (16, 16) and w.dtype == np.float32
    assert np.all(np.abs(w) <= 0.25) and w.std() > 0.1        # U(-1/4, 1/4): std 0.144
    np.testing.assert_array_equal(m.bias.get_value(), -np.ones((16, 1), np.float32))
    assert not hasattr(m, "step_mode")
    assert isinstance(m.surrogate_function, sg.ATan) and m.surrogate_function.alpha == 2.0
    assert not np.array_equal(w, neuron.PSN(16, rngs=nnx.Rngs(1)).weight.get_value())
    np.testing.assert_array_equal(w, neuron.PSN(16, rngs=nnx.Rngs(0)).weight.get_value())

    mm = neuron.MaskedPSN(3, 8, rngs=nnx.Rngs(0))
    assert mm.step_mode == "s" and mm.weight.get_value().shape == (8, 8)
    assert mm.bias.get_value().shape == (8, 1) and mm.lambda_.dtype == jnp.float32
    assert float(mm.lambda_) == 0.0
    assert set(nnx.state(mm, nnx.Param).keys()) == {"weight", "bias"}

    s = neuron.SlidingPSN(5)
    assert s.step_mode == "s"
    np.testing.assert_array_equal(s.weight.get_value(), [0.0625, 0.125, 0.25, 0.5, 1.0])
    assert s.bias.get_value().shape == () and float(s.bias.get_value()) == -1.0
    np.testing.assert_array_equal(neuron.SlidingPSN(1).weight.get_value(), [1.0])
    k = neuron.SlidingPSN(9, exp_init=False, rngs=nnx.Rngs(0)).weight.get_value()
    assert k.shape == (9,) and np.all(np.abs(k) <= 1 / 3) and np.ptp(k) > 0.1


def test_set_step_mode_skips_psn():
    class Net(nnx.Module):
        def __init__(self):
            self.psn = neuron.PSN(4, rngs=nnx.Rngs(0))
            self.sliding = neuron.SlidingPSN(2)

    net = Net()
    functional.set_step_mode(net, "m")
    assert net.sliding.step_mode == "m" and not hasattr(net.psn, "step_mode")
    functional.reset_net(net)


# --- errors -------------------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be <= T"):
        neuron.MaskedPSN(k=5, T=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="T must be a positive int"):
        neuron.PSN(0, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="T must be a positive int"):
        neuron.PSN(4.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="k must be a positive int"):
        neuron.SlidingPSN(0)
    with pytest.raises(TypeError, match="rngs"):
        neuron.PSN(4)
    with pytest.raises(TypeError, match="rngs"):
        neuron.SlidingPSN(3, exp_init=False)
    with pytest.raises(ValueError, match="step_mode"):
        neuron.MaskedPSN(2, 4, step_mode="x", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="method"):
        neuron.SlidingPSN(3, method="fft")
    with pytest.raises(TypeError, match="exp_init"):
        neuron.SlidingPSN(3, exp_init=1)
    with pytest.raises(TypeError, match="lambda_init"):
        neuron.MaskedPSN(2, 4, lambda_init="0", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="surrogate_function"):
        neuron.PSN(4, surrogate_function=3, rngs=nnx.Rngs(0))


def test_bad_inputs():
    x = jnp.ones((5, 3))
    with pytest.raises(ValueError, match="T = 4"):
        neuron.PSN(4, rngs=nnx.Rngs(0))(x)
    with pytest.raises(ValueError, match="T = 4"):
        jax.jit(lambda x: neuron.MaskedPSN(2, 4, step_mode="m", rngs=nnx.Rngs(0))(x))(x)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        neuron.PSN(4, rngs=nnx.Rngs(0))(jnp.ones(4))
    with pytest.raises(ValueError, match="unknown params"):
        m = neuron.PSN(4, rngs=nnx.Rngs(0))
        m.multi_step({}, jnp.ones((4, 2)), {"w": 1.0})

    m = neuron.MaskedPSN(2, 4, rngs=nnx.Rngs(0))                 # default: 's', lambda_ = 0
    with pytest.raises(ValueError, match="lambda_ >= 1"):
        m(jnp.ones(3))
    m.lambda_ = 0.99
    with pytest.raises(ValueError, match="lambda_ >= 1"):
        m.step(m.init_state(jnp.ones(3)), jnp.ones(3))
    m.lambda_ = 1
    for _ in range(4):
        m(jnp.ones(3))
    with pytest.raises(OverflowError, match="T = 4"):
        m(2 * jnp.ones(3))
    assert int(m.time_step) == 4                                 # a refused step changes nothing
    np.testing.assert_array_equal(m.queue, jnp.ones((2, 3)))
    m.reset()
    m(jnp.ones(3))
    assert int(m.time_step) == 1


def test_invalid_single_step_under_jit_is_nan():
    """Errors need concrete values; a traced invalid step is flagged with NaN instead."""
    m = neuron.MaskedPSN(2, 3, step_mode="s", lambda_init=1.0, rngs=nnx.Rngs(0))
    step = jax.jit(m.step)
    x = jnp.ones(2)
    state = m.init_state(x)
    for _ in range(3):
        state, out = step(state, x)
        assert np.all(np.isfinite(out))
    state, out = step(state, x)                                  # step T + 1
    assert np.all(np.isnan(out))
    _, out = step(m.init_state(x), x, {"lambda_": jnp.float32(0.5)})
    assert np.all(np.isnan(out))


# --- single vs multi step, shapes, dtypes, transformations --------------------------------------

def _randn(seed, shape, scale=1.0, loc=0.0):
    """Test data from numpy (eager jax.random ops would each compile a kernel)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale + loc,
                       jnp.float32)


def _random_params(m, seed):
    p = m.params()
    p["weight"] = _randn(seed, p["weight"].shape, 0.7, 0.5)
    p["bias"] = p["bias"] + _randn(seed + 1, p["bias"].shape, 0.2)
    return p


def _single_vs_multi(m, x, p):
    _, multi = jax.jit(m.multi_step)(m.init_state(x[0]), x, p)
    step = jax.jit(m.step)
    state, outs = m.init_state(x[0]), []
    for t in range(x.shape[0]):
        state, o = step(state, x[t], p)
        outs.append(o)
    np.testing.assert_array_equal(jnp.stack(outs), multi)
    assert 0 < float(multi.mean()) < 1
    return state


@pytest.mark.parametrize("k,T", [(1, 5), (3, 6), (6, 6)])
def test_masked_single_equals_multi(k, T):
    m = neuron.MaskedPSN(k, T, lambda_init=1.0, rngs=nnx.Rngs(0))
    x = _randn(k, (T, 4, 3), 2, 0.5)
    p = _random_params(m, 10 + k)
    state = _single_vs_multi(m, x, p)
    assert int(state["time_step"]) == T
    np.testing.assert_array_equal(state["queue"], x[T - k:])
    p["lambda_"] = jnp.float32(3.0)
    _single_vs_multi(m, x, p)


@pytest.mark.parametrize("k,T", [(3, 2), (3, 7), (1, 4), (4, 12)])
def test_sliding_single_equals_multi(k, T):
    m = neuron.SlidingPSN(k, exp_init=False, rngs=nnx.Rngs(k))
    x = _randn(T, (T, 2, 5), 2, 0.5)
    p = _random_params(m, 20 + T + k)
    _single_vs_multi(m, x, p)


def test_sliding_methods_agree():
    """Toeplitz product and causal convolution give the same potential and gradients."""
    w = jnp.asarray([0.3, -0.7, 0.2, 1.1])
    x = _randn(0, (260, 3, 2))

    @jax.jit
    def potentials_and_grads(x, w):
        out = {}
        for method in ("matmul", "conv"):
            h = lambda x, w: steps.psn.sliding_psn_potential(x, w, jnp.float32(-0.5),
                                                            method=method)
            out[method] = (h(x, w), jax.grad(lambda x, w: (h(x, w) ** 2).sum(),
                                             argnums=(0, 1))(x, w))
        return out

    for T in (2, 260):
        res = potentials_and_grads(x[:T], w)
        direct = sum(w[i] * np.pad(x[:T], ((3 - i, 0), (0, 0), (0, 0)))[:T] for i in range(4))
        for method in ("matmul", "conv"):
            h, (gx, gw) = res[method]
            np.testing.assert_allclose(h, direct - 0.5, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(gx, res["matmul"][1][0], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(gw, res["matmul"][1][1], rtol=1e-4, atol=1e-4)
    conv = neuron.SlidingPSN(4, step_mode="m", method="conv")
    auto = neuron.SlidingPSN(4, step_mode="m")
    np.testing.assert_array_equal(conv(x[:40] + 0.3), auto(x[:40] + 0.3))


def test_sliding_single_step_has_no_limit():
    m = neuron.SlidingPSN(3)
    x = jnp.ones((20, 2)) * 0.5
    outs = [m(x[t]) for t in range(20)]
    assert m.queue.shape == (3, 2)
    np.testing.assert_array_equal(jnp.stack(outs), neuron.SlidingPSN(3, step_mode="m")(x))


def test_multi_step_leaves_single_step_state_untouched():
    m = neuron.MaskedPSN(2, 4, lambda_init=1.0, rngs=nnx.Rngs(0))
    x = _randn(0, (4, 3), 1, 1)
    m(x[0])
    m.step_mode = "m"
    m(x)
    assert int(m.time_step) == 1
    np.testing.assert_array_equal(m.queue, jnp.stack([jnp.zeros(3), x[0]]))
    s = neuron.SlidingPSN(2, step_mode="m")
    s(x)
    assert s.queue.shape == () and float(s.queue) == 0


def test_no_time_loop():
    """Multi-step is one product over time: no scan/while, program size independent of T."""
    def count(m, T):
        jaxpr = jax.make_jaxpr(lambda x: m.multi_step({}, x)[1])(jnp.ones((T, 3)))
        names = [e.primitive.name for e in jaxpr.jaxpr.eqns]
        assert not {"scan", "while"} & set(names), names
        assert "dot_general" in names or "conv_general_dilated" in names
        return len(names)

    assert count(neuron.PSN(4, rngs=nnx.Rngs(0)), 4) == count(neuron.PSN(64, rngs=nnx.Rngs(0)), 64)
    m4, m64 = (neuron.MaskedPSN(2, T, step_mode="m", rngs=nnx.Rngs(0)) for T in (4, 64))
    assert count(m4, 4) == count(m64, 64)
    s = neuron.SlidingPSN(3, step_mode="m")
    assert count(s, 4) == count(s, 64)
    assert count(s, 1000) == count(s, 2000)


@pytest.mark.parametrize("cls", CLASSES)
def test_bf16_and_shapes(cls):
    m = {"PSN": lambda: neuron.PSN(6, rngs=nnx.Rngs(0)),
         "MaskedPSN": lambda: neuron.MaskedPSN(2, 6, lambda_init=0.5, step_mode="m",
                                               rngs=nnx.Rngs(0)),
         "SlidingPSN": lambda: neuron.SlidingPSN(3, step_mode="m")}[cls]()
    x = _randn(0, (6, 2, 3, 4), 2, 1).astype(jnp.bfloat16)
    out = jax.jit(m.multi_step)({}, x)[1]
    assert out.dtype == jnp.bfloat16 and out.shape == x.shape
    ref = m.multi_step({}, x.astype(jnp.float32))[1]
    np.testing.assert_array_equal(out.astype(jnp.float32), ref)
    g = jax.grad(lambda x: m.multi_step({}, x)[1].astype(jnp.float32).sum())(x)
    assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))


@pytest.mark.parametrize("cls", CLASSES)
def test_vmap(cls):
    """vmap over a batch of sequences and over a population of weights."""
    m = {"PSN": lambda: neuron.PSN(5, rngs=nnx.Rngs(0)),
         "MaskedPSN": lambda: neuron.MaskedPSN(2, 5, lambda_init=1.0, rngs=nnx.Rngs(0)),
         "SlidingPSN": lambda: neuron.SlidingPSN(2, exp_init=False, rngs=nnx.Rngs(0))}[cls]()
    xs = _randn(1, (3, 5, 4), 2, 0.5)   # 3 sequences [T, N]
    run = lambda x, p: m.multi_step(m.init_state(x[0]), x, p)[1]
    p = m.params()
    batched = jax.jit(jax.vmap(run, in_axes=(0, None)))(xs, p)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], run(xs[i], p))
    ws = _randn(2, (3,) + p["weight"].shape)
    pop = jax.vmap(lambda w: run(xs[0], {**p, "weight": w}))(ws)
    for i in range(3):
        np.testing.assert_array_equal(pop[i], run(xs[0], {**p, "weight": ws[i]}))
    if cls != "PSN":                                               # single step under vmap
        step = jax.jit(jax.vmap(m.step, in_axes=(0, 0, None)))
        state = jax.vmap(m.init_state)(xs[:, 0])
        outs = []
        for t in range(5):
            state, o = step(state, xs[:, t], p)
            outs.append(o)
        np.testing.assert_array_equal(jnp.stack(outs, 1), batched)


def test_lambda_annealing_without_retrace():
    """lambda_ is traced state under nnx.jit: changing it does not re-compile."""
    m = neuron.MaskedPSN(2, 4, step_mode="m", rngs=nnx.Rngs(0))
    m.weight.set_value(W7)
    traces = []

    @nnx.jit
    def fwd(m, x):
        traces.append(1)
        return m(x)

    expected = {0.0: neuron.PSN(4, rngs=nnx.Rngs(0)), 1.0: None}
    expected[0.0].weight.set_value(W7)
    np.testing.assert_array_equal(fwd(m, X7), expected[0.0](X7))
    for lam in (0.25, 0.5, 0.75, 1.0):
        m.lambda_ = jnp.float32(lam)
        out = fwd(m, X7)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]])
    assert len(traces) == 1

    @nnx.jit
    def anneal(m, lam):                                           # set inside a jitted update
        m.lambda_ = lam

    anneal(m, jnp.float32(0.5))
    assert float(m.lambda_) == 0.5


def test_training_step_updates_params():
    """A PSN inside an NNX model: gradient reaches weight and bias, lambda_ is not a Param."""
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(3, 4, rngs=rngs)
            self.psn = neuron.MaskedPSN(2, 6, lambda_init=0.5, step_mode="m", rngs=rngs)

    net = Net(nnx.Rngs(0))
    x = _randn(0, (6, 5, 3))

    def loss(net):
        return net.psn(net.fc(x)).mean()

    grads = nnx.grad(loss)(net)
    g = nnx.to_pure_dict(grads)
    assert set(g["psn"]) == {"weight", "bias"}
    assert np.abs(g["psn"]["weight"]).sum() > 0 and np.abs(g["fc"]["kernel"]).sum() > 0


def test_masked_psn_lambda_schedule_reaches_single_step_mode():
    sched = neuron.MaskedPSN.lambda_schedule
    np.testing.assert_allclose([sched(s, 10, start_step=5) for s in (0, 5, 10, 15, 30)],
                               [0.0, 0.0, 0.5, 1.0, 1.0])
    m = neuron.MaskedPSN(k=2, T=4, step_mode="m", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3)) + 0.5
    m.lambda_ = sched(3, 10)
    assert float(m.lambda_) == pytest.approx(0.3)
    m.lambda_ = sched(10, 10)                          # fully annealed: single-step allowed
    out_m = m(x)
    m.step_mode = "s"
    out_s = jnp.stack([m(x[t]) for t in range(4)])
    np.testing.assert_array_equal(out_s, out_m)
    with pytest.raises(ValueError, match="anneal_steps"):
        sched(1, 0)
