"""AdaptBaseNode, IzhikevichNode, QIFNode, EIFNode against SpikingJelly 2.0.0 data, plus
transformations, overflow guard and argument errors."""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import neuron, steps, surrogate
from snnjax.neuron import AdaptBaseNode
from golden_utils import case_names, precision
from golden_checks import QuadraticAdaptNode

CLASSES = ["IzhikevichNode", "QIFNode", "EIFNode"]
CASES = [n for c in CLASSES for n in case_names(c)]








# --- AdaptBaseNode through a subclass --------------------------------------------------------





def test_adapt_base_initial_state_and_params():
    m = QuadraticAdaptNode(w_rest=0.3, v_reset=None)
    st = m.init_state(jnp.zeros((2, 3), jnp.bfloat16))
    assert set(st) == {"v", "w"} and st["w"].dtype == jnp.float32
    np.testing.assert_array_equal(st["v"], 0.0)
    np.testing.assert_allclose(st["w"], 0.3)
    assert {"v_rest", "tau_w", "a", "b", "v_threshold", "v_reset"} <= set(m.params())
    # with a = b = 0, w only decays: w_t = (1 - 1/tau_w)^t * w_rest
    st, _ = m.multi_step(st, jnp.zeros((3, 2, 3)))
    np.testing.assert_allclose(st["w"], 0.3 * 0.5 ** 3, rtol=1e-6)


def test_adapt_base_custom_adaptation_override():
    class NoLeak(QuadraticAdaptNode):
        def neuronal_adaptation(self, w, h, params):
            return w  # only the spike-triggered jump remains

    m = NoLeak(b=0.5)
    x = jnp.asarray([[3.0], [0.0], [3.0], [3.0]])
    st, s = m.multi_step(m.init_state(x[0]), x)
    np.testing.assert_allclose(st["w"], 0.5 * jnp.sum(s), rtol=1e-6)
    assert float(jnp.sum(s)) >= 2


def test_adapt_base_itself_has_no_dynamics():
    m = AdaptBaseNode()
    with pytest.raises(NotImplementedError, match="neuronal_charge"):
        m(jnp.zeros((2,)))


def test_constructor_signatures_follow_reference():
    def names(cls):
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert names(AdaptBaseNode)[:11] == ["v_threshold", "v_reset", "v_rest", "w_rest", "tau_w",
                                         "a", "b", "surrogate_function", "detach_reset",
                                         "step_mode", "store_v_seq"]
    assert names(neuron.IzhikevichNode)[:3] == ["tau", "v_c", "a0"]
    assert names(neuron.QIFNode)[:6] == ["tau", "v_c", "a0", "v_threshold", "v_rest", "v_reset"]
    assert names(neuron.EIFNode)[:6] == ["tau", "delta_T", "theta_rh", "v_threshold", "v_rest",
                                         "v_reset"]
    m = neuron.IzhikevichNode()
    assert (m.v_rest, m.v_reset, m.a, m.b, m.tau_w) == (-0.1, 0.0, 0.0, 0.0, 2.0)
    assert neuron.QIFNode().v_reset == -0.1 and neuron.EIFNode().theta_rh == 0.8


# --- reference worked examples (spec research-adaptive.md, float32) --------------------------

X4 = jnp.asarray([[0.9, 1.5], [1.2, -0.4], [2.0, 0.3], [0.1, 1.8]], jnp.float32)


@pytest.mark.parametrize("make, spikes, finals, gx", [
    (lambda: neuron.IzhikevichNode(a=0.3, b=0.2), [0, 0, 0, 0, 1, 0, 0, 1],
     {"v": [-0.279679, 0], "w": [0.262727, 0.454956]},
     [0.541646, 0.597598, 0.475149, 0.570073, 0.06806, 0.534209, 0.011825, 0.47096]),
    (lambda: neuron.QIFNode(), [0, 0, 0, 0, 1, 0, 0, 1], {"v": [-0.005, -0.1]},
     [0.562262, 0.686893, 0.486602, 0.587297, 0.037143, 0.479291, 0.034651, 0.310703]),
    (lambda: neuron.EIFNode(), [0, 0, 1, 0, 1, 1, 0, 1], {"v": [0.203285, -0.1]},
     [0.323099, 0.497667, 0.074845, 0.45286, 0.394592, 0.096842, 0.07618, 0.494364]),
])
def test_reference_worked_examples(make, spikes, finals, gx):
    m = make()

    def loss(x):
        st, s = m.multi_step(m.init_state(x[0]), x)
        return jnp.sum(s), (s, st)

    g, (s, st) = jax.jit(jax.grad(loss, has_aux=True))(X4)
    np.testing.assert_array_equal(s.reshape(-1), spikes)
    for k, v in finals.items():
        np.testing.assert_allclose(st[k], v, atol=2e-6)
    np.testing.assert_allclose(g.reshape(-1), gx, atol=2e-6)


# --- transformations -------------------------------------------------------------------------

KEY = jax.random.PRNGKey(3)
X = 1.5 * jax.random.normal(KEY, (7, 5)) + 0.6


def _run(m, x, params=None):
    return m.multi_step(m.init_state(x[0]), x, params)


def test_vmap_over_hyperparameter_population():
    """A population with different tau, a, b (Izhikevich), v_c, a0 (QIF), delta_T (EIF):
    vmapped params equal modules built with each value."""
    pops = [
        (neuron.IzhikevichNode, {"tau": [1.5, 2.0, 4.0], "a": [0.0, 0.1, 0.4],
                                 "b": [0.0, 0.2, 0.5]}),
        (neuron.QIFNode, {"v_c": [0.5, 0.8, 0.9], "a0": [0.5, 1.0, 2.0]}),
        (neuron.EIFNode, {"delta_T": [0.5, 1.0, 2.0], "theta_rh": [0.6, 0.8, 0.9]}),
    ]
    for cls, pop in pops:
        m = cls()
        arrays = {k: jnp.asarray(v, jnp.float32) for k, v in pop.items()}
        st, out = jax.jit(jax.vmap(lambda p: _run(m, X, p)))(arrays)
        for i in range(3):
            ref = cls(**{k: v[i] for k, v in pop.items()})
            st_i, out_i = _run(ref, X)
            np.testing.assert_array_equal(out[i], out_i)
            for k in st_i:
                np.testing.assert_allclose(st[k][i], st_i[k], rtol=1e-6, atol=1e-6)
        assert out.sum() > 0


def test_per_neuron_parameter_arrays():
    """Params given as [N] arrays act per neuron (no vmap needed)."""
    m = neuron.IzhikevichNode()
    a = jnp.linspace(0.0, 0.5, X.shape[1])
    b = jnp.linspace(0.5, 0.0, X.shape[1])
    st, out = jax.jit(lambda p: _run(m, X, p))({"a": a, "b": b})
    for n in range(X.shape[1]):
        ref = neuron.IzhikevichNode(a=float(a[n]), b=float(b[n]))
        st_n, out_n = _run(ref, X[:, n:n + 1])
        np.testing.assert_array_equal(out[:, n], out_n[:, 0])
        np.testing.assert_allclose(st["w"][n], st_n["w"][0], rtol=1e-6, atol=1e-7)


def test_grad_wrt_hyperparameters_matches_finite_differences():
    """d(sum of final v and w)/d(a, tau, delta_T, v_c) by autodiff = central differences (float64).

    Subthreshold input and ``detach_reset=True``: no spike and no surrogate term, so the loss is
    smooth and its true derivative is what autodiff must give."""
    x = 0.15 * np.tanh(np.asarray(X, np.float64)) - 0.25
    with precision("float64"):
        xs = jnp.asarray(x)
        d = {"detach_reset": True}
        for m, name in [(neuron.IzhikevichNode(a=0.2, **d), "a"),
                        (neuron.IzhikevichNode(a=0.2, **d), "tau"),
                        (neuron.EIFNode(**d), "delta_T"), (neuron.QIFNode(**d), "v_c")]:
            assert float(jnp.sum(m.multi_step(m.init_state(xs[0]), xs)[1])) == 0
            def f(p):
                st, _ = m.multi_step(m.init_state(xs[0]), xs, {name: p})
                return sum(jnp.sum(v) for v in st.values())
            p0 = jnp.asarray(m.params()[name], jnp.float64)
            g = jax.jit(jax.grad(f))(p0)
            fd = (f(p0 + 1e-6) - f(p0 - 1e-6)) / 2e-6
            assert abs(float(g)) > 1e-4
            np.testing.assert_allclose(g, fd, rtol=1e-6)


@pytest.mark.parametrize("cls", [neuron.IzhikevichNode, neuron.QIFNode, neuron.EIFNode])
def test_single_step_equals_multi_step_with_grads(cls):
    m = cls(a=0.2, b=0.3) if cls is neuron.IzhikevichNode else cls()
    w = jnp.arange(X.size, dtype=jnp.float32).reshape(X.shape) / X.size

    def loss_m(x):
        st, out = m.multi_step(m.init_state(x[0]), x)
        return jnp.sum(out * w) + jnp.sum(st["v"])

    def loss_s(x):
        st, tot = m.init_state(x[0]), 0.0
        for t in range(x.shape[0]):
            st, o = m.step(st, x[t])
            tot = tot + jnp.sum(o * w[t])
        return tot + jnp.sum(st["v"])

    np.testing.assert_allclose(jax.jit(jax.grad(loss_m))(X), jax.grad(loss_s)(X), rtol=1e-5,
                               atol=1e-6)


# --- overflow guard --------------------------------------------------------------------------

def _unguarded_final(kind, x, soft):
    """Plain float32 numpy recursion without clamps: shows the input really overflows."""
    v = np.full(x.shape[1:], 0.0 if soft else -0.1, np.float32)
    with np.errstate(all="ignore"):
        for t in range(x.shape[0]):
            if kind == "EIFNode":
                h = v + (x[t] - v + np.exp(v - np.float32(0.8))) / np.float32(2)
            else:
                h = v + (x[t] + (v - np.float32(0.0)) * (v - np.float32(0.8))) / np.float32(2)
            s = (h >= 1).astype(np.float32)
            v = h - s if soft else s * np.float32(-0.1) + (1 - s) * h
    return v


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("name", CLASSES)
def test_large_inputs_stay_finite(name, soft, dtype):
    """Large drives make V**2 / exp(V) overflow float32; states, spikes and gradients stay finite."""
    big = float(jnp.finfo(dtype).max) / 2
    x = jnp.asarray(np.array([[1e2, 1e4, big, -big, 3.0]] * 8), dtype)
    kw = {"v_reset": None} if soft else ({"v_reset": -0.1} if name != "IzhikevichNode" else {})
    if name == "IzhikevichNode":
        kw.update(a=0.5, b=0.5)
    m = getattr(neuron, name)(**kw)
    # Without the guard this input overflows to inf/NaN whenever V can grow (soft reset), and for
    # QIF's hard reset once one charge overflows (wide-range dtypes). Check that it really does.
    if soft and name != "IzhikevichNode" or name == "QIFNode" and dtype != jnp.float16:
        ref = _unguarded_final(name, np.asarray(x, np.float32), soft)
        assert not np.all(np.isfinite(ref)), "test input does not overflow without the guard"

    def loss(x):
        st, out = m.multi_step(m.init_state(x[0]), x)
        return jnp.sum(out.astype(jnp.float32)), (st, out)

    g, (st, out) = jax.jit(jax.grad(loss, has_aux=True))(x)
    assert out.dtype == dtype
    for a in [g, out, *st.values()]:
        assert np.all(np.isfinite(np.asarray(a, np.float32))), name
    bound = steps.membrane_bound(jnp.float32)
    assert np.all(np.abs(np.asarray(st["v"])) <= bound + 1.0)
    assert np.all(np.asarray(out[:, 2]) == 1)  # the huge positive drive fires every step


def test_membrane_bound_values():
    assert steps.membrane_bound(jnp.float32) == pytest.approx(np.sqrt(np.finfo(np.float32).max) / 4)
    b = steps.membrane_bound(jnp.float32)
    assert np.isfinite(np.float32(16) * np.float32(b) * np.float32(b) * np.float32(0.99))


def test_guard_does_not_touch_ordinary_values():
    v = jnp.linspace(-40.0, 40.0, 11)  # EIF exponent cap in float32: log(B) = 42.97
    p = {"tau": 2.0, "a0": 1.0, "v_rest": 0.0, "v_c": 0.8, "delta_T": 1.0, "theta_rh": 0.8}
    np.testing.assert_allclose(steps.qif_charge(v, 1.0, p), v + (1.0 + v * (v - 0.8)) / 2.0,
                               rtol=1e-6)
    np.testing.assert_allclose(steps.eif_charge(v, 1.0, p), v + (1.0 - v + jnp.exp(v - 0.8)) / 2.0,
                               rtol=1e-6)


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, match", [
    (lambda: neuron.IzhikevichNode(tau=1.0), ValueError, "tau"),
    (lambda: neuron.IzhikevichNode(a0=0.0), ValueError, "a0"),
    (lambda: neuron.IzhikevichNode(a="0.1"), TypeError, "a must be"),
    (lambda: neuron.IzhikevichNode(tau_w=0.0), ValueError, "tau_w"),
    (lambda: neuron.IzhikevichNode(step_mode="x"), ValueError, "step_mode"),
    (lambda: neuron.QIFNode(v_threshold=-0.2), ValueError, "v_threshold must be > v_reset"),
    (lambda: neuron.QIFNode(v_rest=-0.5), ValueError, "v_rest must be >= v_reset"),
    (lambda: neuron.QIFNode(a0=-1.0), ValueError, "a0"),
    (lambda: neuron.EIFNode(delta_T=0.0), ValueError, "delta_T"),
    (lambda: neuron.EIFNode(tau=0.5), ValueError, "tau"),
    (lambda: neuron.EIFNode(theta_rh=float("nan")), ValueError, "theta_rh"),
    (lambda: neuron.EIFNode(backend="cuda"), ValueError, "backend"),
    (lambda: neuron.QIFNode(surrogate_function=3), TypeError, "surrogate_function"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_ordering_checks_skipped_with_soft_reset():
    m = neuron.QIFNode(v_rest=-0.5, v_reset=None)
    assert m.soft_reset
    neuron.EIFNode(v_threshold=-1.0, v_reset=None)


def test_unknown_param_override_rejected():
    m = neuron.QIFNode()
    with pytest.raises(ValueError, match="unknown params"):
        m.step(m.init_state(X[0]), X[0], {"delta_T": 1.0})


def test_surrogate_by_name():
    m = neuron.EIFNode(surrogate_function="ATan")
    assert isinstance(m.surrogate_function, surrogate.ATan)


@pytest.mark.parametrize("make", [lambda: neuron.IzhikevichNode(a=0.1, b=0.2),
                                  lambda: neuron.QIFNode(v_reset=None), lambda: neuron.EIFNode(),
                                  lambda: QuadraticAdaptNode()])
def test_steps_are_elementwise_for_fused_kernels(make):
    """The kernel generator accepts the steps (elementwise, including the overflow guard)."""
    from snnjax import kernels
    m = make()
    kernels.check_step(m.bound_step(), m.init_state(X[0]), X, m.params(),
                       kernels.Config())
