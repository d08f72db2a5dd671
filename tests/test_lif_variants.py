"""GatedLIFNode, KLIFNode, CUBALIFNode, LIAFNode against SpikingJelly 2.0.0 data, plus
transformations, GLIF shape handling and argument errors."""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import neuron, surrogate
from golden_utils import case_names, load_case, precision

STEP_CLASSES = ["KLIFNode", "CUBALIFNode", "LIAFNode"]
STEP_CASES = [n for c in STEP_CLASSES for n in case_names(c)]
GLIF_CASES = case_names("GatedLIFNode")














def test_gated_lif_deterministic_initial_parameters():
    """tau, v_threshold, linear_decay, v_subreset, conduct are logits of the init_* values (the
    defaults of linear_decay and v_subreset derive from init_v_threshold and T)."""
    case = load_case("GatedLIFNode__default_inplane")
    m = neuron.GatedLIFNode(**case.kwargs, rngs=nnx.Rngs(0))
    for k in ("tau", "v_threshold", "linear_decay", "v_subreset", "conduct"):
        got = m.params()[k]
        assert got.dtype == jnp.float32 and got.shape == case[f"param_{k}"].shape
        np.testing.assert_allclose(got, case[f"param_{k}"], rtol=1e-6, atol=1e-7)
    assert neuron.GatedLIFNode(T=4, rngs=nnx.Rngs(0)).linear_decay.get_value() == \
        pytest.approx(-2.7080502)


def test_gated_lif_random_gates_come_from_rngs():
    a = neuron.GatedLIFNode(T=3, inplane=64, rngs=nnx.Rngs(1))
    b = neuron.GatedLIFNode(T=3, inplane=64, rngs=nnx.Rngs(1))
    c = neuron.GatedLIFNode(T=3, inplane=64, rngs=nnx.Rngs(2))
    gates = [a.alpha, a.beta, a.gamma]
    for g in gates:
        v = np.asarray(g.get_value())
        assert v.shape == (64,) and v.min() >= -0.1 and v.max() < 0.1 and v.std() > 0.03
    assert not np.array_equal(a.alpha.get_value(), a.beta.get_value())
    np.testing.assert_array_equal(a.gamma.get_value(), b.gamma.get_value())
    assert not np.array_equal(a.alpha.get_value(), c.alpha.get_value())
    with pytest.raises(TypeError, match="rngs"):
        neuron.GatedLIFNode(T=3)


def _glif_numpy(x, p, inplane):
    """Independent loop of the GLIF equations; channels on axis 2 of x [T, N, C, *]."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    nd = x.ndim - 1

    def ch(a):  # (C,) -> broadcast over [N, C, *]
        a = np.asarray(a, np.float64)
        return a if inplane is None else a.reshape((1, -1) + (1,) * (nd - 2))
    al, be, ga, ta = (sig(ch(p[k])) for k in ("alpha", "beta", "gamma", "tau"))
    th, ld, vs = (sig(ch(p[k])) for k in ("v_threshold", "linear_decay", "v_subreset"))
    v, s, outs = np.zeros(x.shape[1:]), np.zeros(x.shape[1:]), []
    for t in range(x.shape[0]):
        c = sig(ch(p["conduct"][t]))
        k = 1 - al * (1 - ta)
        v = k * v * (1 - ga * s) - (1 - ga) * vs * s - (1 - al) * ld + x[t] * (1 - be * (1 - c))
        s = (v >= th).astype(np.float64)
        outs.append(s)
    return np.stack(outs), v


@pytest.mark.parametrize("shape, inplane", [((5, 3, 4), 4), ((5, 3, 4, 2), 4), ((5, 6), None),
                                            ((5, 2, 3, 7), None)])
def test_gated_lif_channel_axis_and_other_ranks(shape, inplane):
    """Channels are axis 2 of [T, N, C, *] for any rank; layer-wise gates work elementwise on any
    [T, N, *] (the reference mis-shapes everything but [T, N, C, H, W])."""
    with precision("float64"):
        m = neuron.GatedLIFNode(T=shape[0], inplane=inplane, rngs=nnx.Rngs(4))
        p = {k: v.astype(jnp.float64) for k, v in m.params().items()}
        p["alpha"] = p["alpha"] + jnp.linspace(-1.0, 1.0, p["alpha"].size).reshape(p["alpha"].shape)
        x = 0.8 * jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float64) + 0.5
        st, out = jax.jit(m.multi_step)(m.init_state(x[0]), x, p)
        ref_out, ref_v = _glif_numpy(np.asarray(x), {k: np.asarray(v) for k, v in p.items()},
                                     inplane)
        assert out.shape == shape
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_allclose(st["v"], ref_v, rtol=1e-12, atol=1e-12)
        assert 0 < float(out.mean()) < 1


def test_gated_lif_bad_inputs():
    m = neuron.GatedLIFNode(T=4, inplane=3, rngs=nnx.Rngs(0))
    st = m.init_state(jnp.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="T=4"):
        m.multi_step(st, jnp.zeros((5, 2, 3, 4, 4)))
    with pytest.raises(ValueError, match="C=3"):
        m.multi_step(st, jnp.zeros((4, 2, 5, 4, 4)))
    with pytest.raises(ValueError, match="C=3"):
        m(jnp.zeros((4, 6)))
    with pytest.raises(ValueError, match="multi-step only"):
        m.step(st, jnp.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="step_mode"):
        neuron.GatedLIFNode(T=4, step_mode="s", rngs=nnx.Rngs(0))
    for kw, match in [({"init_tau": 1.0}, "init_tau"), ({"init_conduct": 0.0}, "init_conduct"),
                      ({"init_v_threshold": 1.5}, "init_v_threshold"),
                      ({"init_linear_decay": -0.1}, "init_linear_decay"),
                      ({"init_v_subreset": 1.0}, "init_v_subreset"), ({"inplane": 0}, "inplane")]:
        with pytest.raises(ValueError, match=match):
            neuron.GatedLIFNode(T=4, rngs=nnx.Rngs(0), **kw)
    with pytest.raises(ValueError, match="T must be"):
        neuron.GatedLIFNode(T=2.5, rngs=nnx.Rngs(0))


def test_gated_lif_previous_spike_restarts_each_call():
    """The stored v persists between calls; the previous spike (the pending reset) does not."""
    m = neuron.GatedLIFNode(T=3, rngs=nnx.Rngs(0))
    x = jnp.full((3, 4), 2.0)
    m(x)
    v1 = m.v
    out2 = m(x)
    s0 = {"v": v1, "s": jnp.zeros_like(v1)}
    p = {k: m.params()[k] for k in ("alpha", "gamma", "tau", "v_threshold", "linear_decay",
                                    "v_subreset")}
    cur = x[0] * (1 - jax.nn.sigmoid(m.beta.get_value())
                  * (1 - jax.nn.sigmoid(m.conduct.get_value()[0])))
    _, first = m.bound_step()(s0, cur, p)
    np.testing.assert_array_equal(out2[0], first)


def test_gated_lif_vmap_and_grad_over_parameters():
    m = neuron.GatedLIFNode(T=4, inplane=2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 2, 5)) + 0.6
    p0 = m.params()

    def loss(p):
        st, out = m.multi_step(m.init_state(x[0]), x, p)
        return jnp.sum(out) + jnp.sum(st["v"])

    g = jax.jit(jax.grad(loss))(p0)
    assert set(g) == set(p0) and all(np.all(np.isfinite(v)) and np.any(v != 0) for v in g.values())
    taus = jnp.stack([p0["tau"] - 1.0, p0["tau"], p0["tau"] + 1.0])
    outs = jax.vmap(lambda t: m.multi_step(m.init_state(x[0]), x, {"tau": t})[1])(taus)
    for i in range(3):
        np.testing.assert_array_equal(outs[i], m.multi_step(m.init_state(x[0]), x,
                                                            {"tau": taus[i]})[1])


# --- reference worked examples (spec research-lif-variants.md, float32) -----------------------

X4 = jnp.asarray([[0.9, 1.5], [1.2, -0.4], [2.0, 0.3], [0.1, 1.8]], jnp.float32)


def test_reference_example_klif():
    m = neuron.KLIFNode(scale_reset=True, v_reset=None)

    def loss(x, p):
        st, s = m.multi_step(m.init_state(x[0]), x, p)
        return jnp.sum(s), (s, st)

    (gx, gp), (s, st) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(
        X4, {"k": jnp.float32(1.3)})
    np.testing.assert_array_equal(s.reshape(-1), [0, 0, 1, 0, 1, 0, 0, 1])
    np.testing.assert_allclose(st["v"], [0.179327, 0.249519], atol=2e-6)
    np.testing.assert_allclose(gp["k"], 2.984061, rtol=2e-6)
    np.testing.assert_allclose(gx.reshape(-1), [0.497458, 0.648677, 0.64114, 0.239575, 0.445327,
                                                0.315165, 0.110475, 0.438201], atol=2e-6)


def test_reference_example_cubalif():
    m = neuron.CUBALIFNode(step_mode="m")
    g, (s, st) = jax.grad(lambda x: (lambda r: (jnp.sum(r[1]), (r[1], r[0])))(
        m.multi_step(m.init_state(x[0]), x)), has_aux=True)(X4)
    np.testing.assert_array_equal(s.reshape(-1), [1, 1, 1, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(st["v"], [0, 0], atol=1e-7)
    np.testing.assert_allclose(st["c"], [1.5125, 2.0375], rtol=1e-6)
    np.testing.assert_allclose(g.reshape(-1), [1, 0.99375, 0, 1.9875, 0, 1, 0, 0], atol=1e-6)


def test_reference_example_liaf():
    m = neuron.LIAFNode(jnp.tanh, True)

    def loss(x):
        st, tot, ys = m.init_state(x[0]), 0.0, []
        for t in range(x.shape[0]):
            st, y = m.step(st, x[t])
            ys.append(y)
        return jnp.sum(jnp.stack(ys)), (jnp.stack(ys), st)

    g, (y, st) = jax.grad(loss, has_aux=True)(X4)
    np.testing.assert_allclose(y.reshape(-1), [-0.50052, -0.244919, -0.173235, -0.677782,
                                               0.390593, -0.642547, -0.739783, 0.018748], atol=2e-6)
    np.testing.assert_allclose(st["v"], [0.05, 0], atol=2e-6)
    np.testing.assert_allclose(g.reshape(-1), [0.59701, 0.578807, 0.530251, 0.530518, 0.337292,
                                               0.533229, 0.226361, 0.499824], atol=2e-6)


def test_reference_example_gated_lif():
    m = neuron.GatedLIFNode(T=3, rngs=nnx.Rngs(0))
    p = {**m.params(), "alpha": jnp.float32(0.05), "beta": jnp.float32(-0.05),
         "gamma": jnp.float32(0.02)}
    x = jnp.asarray([0.9, 0.2, 0.7, 1.1, 0.3, 0.6], jnp.float32).reshape(3, 2, 1, 1, 1)

    def loss(x, p):
        st, s = m.multi_step(m.init_state(x[0]), x, p)
        return jnp.sum(s), (s, st)

    (gx, gp), (s, st) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(x, p)
    np.testing.assert_array_equal(s.reshape(-1), [1, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(st["v"].reshape(-1), [0.454835, 0.427499], atol=2e-6)
    np.testing.assert_allclose(gx.reshape(-1), [0.599784, 0.642687, 0.92311, 0.458397, 0.750111,
                                                0.740568], atol=2e-6)
    expected = {"alpha": -0.130889, "beta": -0.411005, "gamma": 0.025235, "tau": 0.125214,
                "v_threshold": -0.946675, "linear_decay": -0.202617, "v_subreset": -0.272239,
                "conduct": 0.400983}
    for k, v in expected.items():
        np.testing.assert_allclose(jnp.sum(gp[k]), v, atol=3e-6, err_msg=k)


# --- transformations, defaults, errors ---------------------------------------------------------

KEY = jax.random.PRNGKey(5)
X = 1.2 * jax.random.normal(KEY, (7, 5)) + 0.5


def _run(m, x, params=None):
    return m.multi_step(m.init_state(x[0]), x, params)


@pytest.mark.parametrize("make, pop", [
    (lambda **k: neuron.KLIFNode(**k), {"tau": [1.5, 2.0, 5.0]}),
    (lambda **k: neuron.CUBALIFNode(**k), {"c_decay": [0.2, 0.5, 0.9], "v_decay": [0.3, 0.75, 0.9]}),
    (lambda **k: neuron.LIAFNode(jax.nn.relu, True, **k), {"tau": [1.5, 2.0, 5.0],
                                                          "v_threshold": [0.5, 1.0, 1.5]}),
])
def test_vmap_over_hyperparameter_population(make, pop):
    m = make()
    arrays = {k: jnp.asarray(v, jnp.float32) for k, v in pop.items()}
    st, out = jax.jit(jax.vmap(lambda p: _run(m, X, p)))(arrays)
    for i in range(3):
        st_i, out_i = _run(make(**{k: v[i] for k, v in pop.items()}), X)
        np.testing.assert_allclose(out[i], out_i, rtol=1e-6, atol=1e-7)
        for k in st_i:
            np.testing.assert_allclose(st[k][i], st_i[k], rtol=1e-6, atol=1e-6)


def test_klif_vmap_over_k_and_grad():
    m = neuron.KLIFNode()
    ks = jnp.asarray([0.7, 1.0, 1.4])
    outs = jax.vmap(lambda k: _run(m, X, {"k": k})[1])(ks)
    for i in range(3):
        np.testing.assert_array_equal(outs[i], _run(m, X, {"k": ks[i]})[1])
    g = jax.grad(lambda p: jnp.sum(_run(m, X, p)[1]))(m.params())
    assert np.isfinite(g["k"]) and g["k"] != 0
    assert isinstance(m.k, nnx.Param) and m.k.get_value().dtype == jnp.float32


@pytest.mark.parametrize("make", [lambda: neuron.KLIFNode(scale_reset=True),
                                  lambda: neuron.CUBALIFNode(),
                                  lambda: neuron.LIAFNode(jnp.tanh, False, v_reset=None)])
def test_single_step_equals_multi_step_with_grads(make):
    m = make()
    w = jnp.arange(X.size, dtype=jnp.float32).reshape(X.shape) / X.size

    def loss_m(x):
        return jnp.sum(_run(m, x)[1] * w)

    def loss_s(x):
        st, tot = m.init_state(x[0]), 0.0
        for t in range(x.shape[0]):
            st, o = m.step(st, x[t])
            tot = tot + jnp.sum(o * w[t])
        return tot

    np.testing.assert_allclose(jax.jit(jax.grad(loss_m))(X), jax.grad(loss_s)(X), rtol=1e-5,
                               atol=1e-6)


def test_low_precision_inputs():
    for m in [neuron.KLIFNode(), neuron.CUBALIFNode(), neuron.LIAFNode(jax.nn.relu, True)]:
        x = X.astype(jnp.bfloat16)
        st, out = _run(m, x)
        assert out.dtype == jnp.bfloat16 and all(v.dtype == jnp.float32 for v in st.values())
    m = neuron.GatedLIFNode(T=7, rngs=nnx.Rngs(0))
    st, out = _run(m, X.astype(jnp.float16))
    assert out.dtype == jnp.float16 and st["v"].dtype == jnp.float32


def test_defaults_and_signatures():
    def names(cls):
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert names(neuron.KLIFNode)[:9] == ["scale_reset", "tau", "decay_input", "v_threshold",
                                          "v_reset", "surrogate_function", "detach_reset",
                                          "step_mode", "store_v_seq"]
    assert names(neuron.CUBALIFNode)[:5] == ["c_decay", "v_decay", "v_threshold", "v_reset",
                                             "surrogate_function"]
    assert names(neuron.GatedLIFNode)[:9] == ["T", "inplane", "init_linear_decay",
                                              "init_v_subreset", "init_tau", "init_v_threshold",
                                              "init_conduct", "surrogate_function", "step_mode"]
    assert names(neuron.LIAFNode)[:2] == ["act", "threshold_related"]
    c = neuron.CUBALIFNode()
    assert (c.c_decay, c.v_decay, c.v_threshold, c.v_reset) == (0.5, 0.75, 0.5, 0.0)
    assert c.surrogate_function == surrogate.Rect(alpha=1.0)
    st = c.init_state(jnp.zeros((3,)))
    assert set(st) == {"v", "c"}
    k = neuron.KLIFNode(v_reset=-0.2)
    np.testing.assert_array_equal(k.init_state(jnp.zeros(2))["v"], np.float32(-0.2))
    assert float(k.k.get_value()) == 1.0
    liaf = neuron.LIAFNode(jax.nn.relu, False, 3.0, False, 0.8)
    assert (liaf.tau, liaf.decay_input, liaf.v_threshold) == (3.0, False, 0.8)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: neuron.KLIFNode(tau=1.0), ValueError, "tau"),
    (lambda: neuron.KLIFNode(scale_reset=1), TypeError, "scale_reset"),
    (lambda: neuron.KLIFNode(step_mode="x"), ValueError, "step_mode"),
    (lambda: neuron.CUBALIFNode(c_decay="a"), TypeError, "c_decay"),
    (lambda: neuron.CUBALIFNode(v_decay=float("inf")), ValueError, "v_decay"),
    (lambda: neuron.LIAFNode(3, True), TypeError, "act"),
    (lambda: neuron.LIAFNode(jax.nn.relu, "yes"), TypeError, "threshold_related"),
    (lambda: neuron.LIAFNode(jax.nn.relu, True, tau=0.5), ValueError, "tau"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_steps_are_elementwise_for_fused_kernels():
    """The kernel generator accepts every step (GLIF: on the precomputed gated current)."""
    from snnjax import kernels
    for m in [neuron.KLIFNode(scale_reset=True), neuron.CUBALIFNode(v_reset=None),
              neuron.LIAFNode(jax.nn.relu, True)]:
        kernels.check_step(m.bound_step(), m.init_state(X[0]), X, m.params(),
                           kernels.Config())
    g = neuron.GatedLIFNode(T=X.shape[0], rngs=nnx.Rngs(0))
    p = {k: g.params()[k] for k in ("alpha", "gamma", "tau", "v_threshold", "linear_decay",
                                    "v_subreset")}
    kernels.check_step(g.bound_step(), {"v": X[0] * 0, "s": X[0] * 0}, X, p,
                       kernels.Config())
