"""Tests of snnjax.surrogate against the SpikingJelly 2.0.0 golden files and for JAX usability."""

import dataclasses
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax.surrogate as S

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
FILES = sorted(glob.glob(os.path.join(GOLDEN, "surrogate__*.npz")))
TOL = dict(atol=1e-10, rtol=1e-10)


def _cases():
    out = []
    for f in FILES:
        meta = json.loads(str(np.load(f)["meta"]))
        for v in meta["variants"]:
            out.append(pytest.param(f, v, id=f"{meta['class']}-{v}"))
    return out


CASES = _cases()

#: one non-default-ish instance of every class
ALL = [
    S.Sigmoid(), S.ATan(), S.PiecewiseQuadratic(), S.PiecewiseExp(), S.SoftSign(), S.SuperSpike(),
    S.NonzeroSignLogAbs(), S.Erf(), S.PiecewiseLeakyReLU(), S.SquarewaveFourierSeries(n=4),
    S.S2NN(), S.QPseudoSpike(), S.LeakyKReLU(0.1, 2.0), S.FakeNumericalGradient(),
    S.LogTailedReLU(0.1), S.DeterministicPass(), S.MultiLevelSpikeCount(3), S.PoissonPass(),
    S.Rect(),
]
DETERMINISTIC = [s for s in ALL if not s.stochastic]


@pytest.fixture
def x64():
    """Enable float64 for one test only, restoring the previous setting."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def _load(path, variant):
    d = np.load(path)
    meta = json.loads(str(d["meta"]))
    arrays = {k[: -len(variant) - 2]: d[k] for k in d.files if k.endswith("__" + variant)}
    return meta, meta["variants"][variant], arrays


def test_all_classes_have_golden_files():
    assert len(FILES) == 19
    assert {os.path.basename(f)[len("surrogate__"):-4] for f in FILES} == set(S.SURROGATES)


# ---------------------------------------------------------------------------------------------
# golden comparisons
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,variant", CASES)
def test_golden(path, variant, x64):
    meta, info, a = _load(path, variant)
    sg = S.get_surrogate(info["params"])
    # constructor kwargs (reference form) and resolved params describe the same surrogate
    assert S.get_surrogate({"name": meta["class"], **info["kwargs"]}) == sg
    x = jnp.asarray(a["x"])
    assert x.dtype == jnp.float64

    if sg.stochastic:
        return  # statistics only: test_poisson_pass_golden
    has_prim = "primitive" in a
    prim = sg.set_spiking_mode(False)

    @jax.jit  # one compilation per case keeps the file fast
    def run(x):
        out = {
            "spike": sg(x),
            "grad": jax.grad(lambda x: jnp.sum(sg(x)))(x),
            "derivative": sg.derivative(x),
        }
        if has_prim:
            out["primitive"] = prim(x)
            out["primitive_method"] = sg.primitive(x)
            out["grad_primitive"] = jax.grad(lambda x: jnp.sum(prim(x)))(x)
        return out

    r = run(x)
    assert r["spike"].dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(r["spike"]), a["spike"])
    np.testing.assert_allclose(np.asarray(r["grad"]), a["grad"], **TOL)
    np.testing.assert_allclose(np.asarray(r["derivative"]), a["grad"], **TOL)
    if has_prim:
        assert sg.has_primitive
        np.testing.assert_allclose(np.asarray(r["primitive"]), a["primitive"], **TOL)
        np.testing.assert_allclose(np.asarray(r["primitive_method"]), a["primitive"], **TOL)
        np.testing.assert_allclose(np.asarray(r["grad_primitive"]), a["grad_primitive"], **TOL)
    else:
        assert "not implemented" in info["primitive"] and not sg.has_primitive
        with pytest.raises(NotImplementedError, match=meta["class"]):
            prim(x)


def test_poisson_pass_golden(x64):
    _, _, a = _load(os.path.join(GOLDEN, "surrogate__PoissonPass.npz"), "default")
    sg = S.PoissonPass()
    x = jnp.asarray(a["x"])
    n = 2000
    keys = jax.random.split(jax.random.key(0), n)
    samples = jax.jit(jax.vmap(lambda k: sg(x, key=k)))(keys)
    assert samples.dtype == jnp.float32 == a["spike"].dtype
    assert set(np.unique(np.asarray(samples))) <= {0.0, 1.0}
    mean = np.asarray(samples.mean(0), dtype=np.float64)
    p = np.asarray(x)
    # both means estimate p from 2000 draws: allow 6 standard deviations of their difference
    bound = 6 * np.sqrt(2 * p * (1 - p) / n) + 1e-6
    assert np.all(np.abs(mean - a["spike_mean_2000"]) <= bound)
    assert np.all(np.abs(mean - p) <= bound)
    np.testing.assert_array_equal(mean[p == 0], 0.0)
    np.testing.assert_array_equal(mean[p == 1], 1.0)
    # straight-through gradient in x's dtype, primitive = identity
    g = jax.jit(jax.grad(lambda x: jnp.sum(sg(x, key=keys[0]))))(x)
    assert g.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(g), a["grad"])
    np.testing.assert_array_equal(np.asarray(sg.set_spiking_mode(False)(x)), a["primitive"])
    np.testing.assert_array_equal(np.asarray(sg.derivative(x)), a["grad"])


def test_poisson_pass_needs_key():
    with pytest.raises(ValueError, match="key"):
        S.PoissonPass()(jnp.full((3,), 0.5))
    # primitive mode needs none
    np.testing.assert_array_equal(S.PoissonPass(spiking=False)(jnp.ones(3)), 1.0)


# ---------------------------------------------------------------------------------------------
# reference values of the spec
# ---------------------------------------------------------------------------------------------


def test_spec_table_values():
    x = jnp.array([-1.0, -0.5, 0.0, 0.25, 1.0])
    np.testing.assert_allclose(S.Erf().derivative(x), [0.020667, 0.415107, 1.12838, 0.878783, 0.020667], atol=1e-5)
    np.testing.assert_allclose(S.S2NN().primitive(x), [0.0179862, 0.119203, 0.50001, 0.723152, 1.19315], atol=1e-5)
    np.testing.assert_allclose(S.LogTailedReLU().derivative(x), [0, 0, 0, 1, 1])
    np.testing.assert_allclose(S.PiecewiseLeakyReLU().derivative(x), [0.01, 0.5, 0.5, 0.5, 0.01])
    np.testing.assert_allclose(S.Rect().derivative(x), [0, 0, 1, 1, 0])


def test_multi_level_spike_count_example():
    x = jnp.array([-1, -0.0, 0, 0.4, 0.5, 1.5, 2.5, 2.6, 3, 3.5, 4, 4.2])
    m = S.MultiLevelSpikeCount(3)
    np.testing.assert_array_equal(m(x), [0, 0, 0, 0, 0, 2, 2, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(jax.grad(lambda x: m(x).sum())(x), [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    mw = S.MultiLevelSpikeCount(3, grad_window=(0.5, 2.5))
    np.testing.assert_array_equal(jax.grad(lambda x: mw(x).sum())(x), [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
    mp = m.set_spiking_mode(False)
    np.testing.assert_array_equal(jax.grad(lambda x: mp(x).sum())(x), [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])


def test_heaviside():
    h = S.heaviside(jnp.array([-1.0, -0.0, 0.0, 2.0, jnp.nan, jnp.inf, -jnp.inf]))
    np.testing.assert_array_equal(h, [0, 1, 1, 1, np.nan, 1, 0])   # NaN: the non-finite policy
    hi = S.heaviside(jnp.array([-2, 0, 3], dtype=jnp.int32))
    assert hi.dtype == jnp.int32
    np.testing.assert_array_equal(hi, [0, 1, 1])
    assert S.heaviside(jnp.zeros(2, jnp.bfloat16)).dtype == jnp.bfloat16


# ---------------------------------------------------------------------------------------------
# JAX usability
# ---------------------------------------------------------------------------------------------


def test_hash_equality_repr():
    assert S.Sigmoid() == S.Sigmoid(4.0) == S.Sigmoid(alpha=4)
    assert hash(S.Sigmoid()) == hash(S.Sigmoid(alpha=4))
    assert S.Sigmoid(2.0) != S.Sigmoid()
    assert S.Sigmoid(4.0) != S.ATan(4.0)
    assert S.Sigmoid() != S.Sigmoid(spiking=False)
    assert S.MultiLevelSpikeCount(2) == S.MultiLevelSpikeCount(2, grad_window=[0, 2])
    assert len({*ALL, *[dataclasses.replace(s) for s in ALL]}) == len(ALL)
    assert repr(S.Sigmoid()) == "Sigmoid(alpha=4.0, spiking=True)"
    assert repr(S.LeakyKReLU()) == "LeakyKReLU(leak=0.0, k=1.0, spiking=True)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        S.ATan().alpha = 3.0


def test_set_spiking_mode_returns_new_instance():
    a = S.ATan()
    b = a.set_spiking_mode(False)
    assert a.spiking and not b.spiking and b.alpha == a.alpha
    assert b.set_spiking_mode(True) == a
    f = S.FakeNumericalGradient(0.5).set_spiking_mode(False)
    assert not f.spiking and f.alpha == 0.5
    with pytest.raises(NotImplementedError, match="FakeNumericalGradient"):
        f(jnp.ones(2))


def test_parameter_order_and_defaults():
    assert S.LeakyKReLU(0.1, 2.0) == S.LeakyKReLU(leak=0.1, k=2.0)
    assert S.PiecewiseLeakyReLU(0.5, 0.1) == S.PiecewiseLeakyReLU(w=0.5, c=0.1)
    assert S.SquarewaveFourierSeries(3, 6.0) == S.SquarewaveFourierSeries(n=3, T_period=6.0)
    assert S.S2NN(2.0, 0.5, False) == S.S2NN(alpha=2.0, beta=0.5, spiking=False)
    m = S.MultiLevelSpikeCount(4)
    assert (m.grad_min, m.grad_max) == (0.0, 4.0)
    assert m.hyperparameters == {"max_spike_count": 4, "grad_min": 0.0, "grad_max": 4.0}
    assert S.Sigmoid().hyperparameters == {"alpha": 4.0}
    assert S.get_surrogate(S.ATan(3.0).set_spiking_mode(False).to_dict()) == S.ATan(3.0, False)


def test_static_argument_of_jit():
    traces = []

    @jax.jit
    def run(x):
        return x

    def f(sg, x):
        traces.append(sg)
        return jax.grad(lambda x: jnp.sum(sg(x)))(x)

    jf = jax.jit(f, static_argnums=0)
    x = jnp.linspace(-1, 1, 7)
    g1 = jf(S.ATan(), x)
    g2 = jf(S.ATan(alpha=2), x)  # equal hyperparameters: cache hit
    assert len(traces) == 1
    jf(S.ATan(alpha=3.0), x)
    assert len(traces) == 2
    np.testing.assert_allclose(g1, S.ATan().derivative(x), rtol=1e-6)
    np.testing.assert_array_equal(g1, g2)


def test_vmap_spike_and_grad():
    xs = jnp.linspace(-2, 2, 24).reshape(4, 6)

    @jax.jit
    def run(xs):
        res = []
        for sg in DETERMINISTIC:
            res.append((
                jax.vmap(sg)(xs), sg(xs),
                jax.vmap(jax.grad(lambda x: jnp.sum(sg(x))))(xs),
                jax.vmap(jax.grad(sg))(xs.ravel()).reshape(xs.shape),  # scalar per element
                sg.derivative(xs),
            ))
        return res

    for sg, (vs, s, vg, ve, d) in zip(DETERMINISTIC, run(xs)):
        np.testing.assert_array_equal(vs, s, err_msg=sg.name)
        np.testing.assert_allclose(vg, d, rtol=1e-6, atol=1e-7, err_msg=sg.name)
        np.testing.assert_allclose(ve, d, rtol=1e-6, atol=1e-7, err_msg=sg.name)


def test_vmap_over_keys_and_batch():
    sg = S.PoissonPass()
    x = jnp.full((3, 5), 0.5)
    keys = jax.random.split(jax.random.key(3), 3)
    out = jax.vmap(lambda k, x: sg(x, key=k))(keys, x)
    assert out.shape == (3, 5) and out.dtype == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "fp16"])
def test_low_precision_keeps_dtype(dtype):
    key = jax.random.key(1)

    @jax.jit
    def run(xa, xp):
        res = []
        for sg in ALL:
            x = xp if sg.stochastic else xa
            r = {
                "out": sg(x, key=key),
                "grad": jax.grad(lambda x: jnp.sum(sg(x, key=key).astype(jnp.float32)))(x),
                "derivative": sg.derivative(x),
            }
            if sg.has_primitive:
                p = sg.set_spiking_mode(False)
                r["prim"] = p(x)
                r["grad_prim"] = jax.grad(lambda x: jnp.sum(p(x).astype(jnp.float32)))(x)
            res.append(r)
        return res

    xa = jnp.linspace(-2, 2, 9).astype(dtype)
    xp = jnp.linspace(0, 1, 9).astype(dtype)
    for sg, r in zip(ALL, run(xa, xp)):
        assert r["out"].dtype == (jnp.float32 if sg.stochastic else dtype), sg.name
        for k in ("grad", "derivative", "prim", "grad_prim"):
            if k in r:
                assert r[k].dtype == dtype, (sg.name, k)
        assert bool(jnp.all(jnp.isfinite(r["derivative"]))), sg.name


def test_finite_everywhere():
    x = jnp.array([-3e38, -1e20, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1.0, 1e20, 3e38, -1e-45], jnp.float32)
    xs = x[jnp.abs(x) < 1e10]  # the primitives themselves may overflow on huge inputs

    @jax.jit
    def run(x, xs):
        res = []
        for sg in DETERMINISTIC:
            r = [sg.derivative(x), jax.grad(lambda x: jnp.sum(sg(x)))(x)]
            if sg.has_primitive:
                p = sg.set_spiking_mode(False)
                r.append(jax.grad(lambda x: jnp.sum(p(x)))(xs))
            res.append(r)
        return res

    for sg, r in zip(DETERMINISTIC, run(x, xs)):
        assert bool(jnp.all(jnp.isfinite(r[0]))) and bool(jnp.all(jnp.isfinite(r[1]))), sg.name
        if len(r) > 2:
            assert not bool(jnp.any(jnp.isnan(r[2]))), sg.name


def test_fake_numerical_gradient_signed_zero():
    d = S.FakeNumericalGradient().derivative(jnp.array([-0.0, 0.0, 1e-8, -1e-8, 10.0, -10.0]))
    np.testing.assert_allclose(d, [0.3, 0.3, 0.3, 0.3, 0.1, 0.1], rtol=1e-6)


def test_primitive_mode_autodiff():
    sg = S.Sigmoid(spiking=False)
    x = jnp.array([-1.0, 0.0, 0.5])
    np.testing.assert_allclose(sg(x), jax.nn.sigmoid(4 * x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda x: sg(x).sum())(x), S.Sigmoid().derivative(x), rtol=1e-6)
    for cls in (S.SuperSpike, S.FakeNumericalGradient):
        with pytest.raises(NotImplementedError, match=cls.__name__):
            cls().primitive(x)


# ---------------------------------------------------------------------------------------------
# errors and lookup
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: S.Sigmoid(alpha="4"), TypeError, "alpha"),
        (lambda: S.ATan(alpha=jnp.array(2.0)), TypeError, "alpha"),
        (lambda: S.ATan(alpha=True), TypeError, "alpha"),
        (lambda: S.Erf(alpha=float("nan")), ValueError, "alpha"),
        (lambda: S.Sigmoid(spiking="yes"), TypeError, "spiking"),
        (lambda: S.SoftSign(alpha=0.0), ValueError, "alpha"),
        (lambda: S.PiecewiseLeakyReLU(w=-1.0), ValueError, "PiecewiseLeakyReLU: w must be > 0, got -1.0"),
        (lambda: S.SquarewaveFourierSeries(n=2.0), TypeError, "SquarewaveFourierSeries: n must be an int"),
        (lambda: S.SquarewaveFourierSeries(n=0), ValueError, "SquarewaveFourierSeries: n must be >= 1"),
        (lambda: S.SquarewaveFourierSeries(T_period=0), ValueError, "T_period"),
        (lambda: S.QPseudoSpike(alpha=1.0), ValueError, "alpha"),
        (lambda: S.MultiLevelSpikeCount(True), TypeError, "max_spike_count"),
        (lambda: S.MultiLevelSpikeCount(2.0), TypeError, "max_spike_count"),
        (lambda: S.MultiLevelSpikeCount(0), ValueError, "max_spike_count"),
        (lambda: S.MultiLevelSpikeCount(2, grad_window=(2.0, 1.0)), ValueError, "grad_min"),
        (lambda: S.MultiLevelSpikeCount(2, grad_window=3), TypeError, "grad_window"),
        (lambda: S.FakeNumericalGradient(spiking=False), TypeError, "spiking"),
        (lambda: S.Sigmoid(beta=1.0), TypeError, "beta"),
        (lambda: S.get_surrogate("Foo"), ValueError, "ATan"),
        (lambda: S.get_surrogate({"alpha": 1.0}), ValueError, "name"),
        (lambda: S.get_surrogate({"name": "ATan", "beta": 1.0}), ValueError, "allowed"),
        (lambda: S.get_surrogate(3), TypeError, "surrogate"),
        (lambda: S.ATan().set_spiking_mode(None), TypeError, "spiking"),
    ],
)
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_get_surrogate_forms():
    a = S.ATan(alpha=3.0)
    assert S.get_surrogate(a) is a
    assert S.get_surrogate("ATan") == S.ATan()
    assert S.get_surrogate(None) == S.Sigmoid()
    assert S.get_surrogate({"name": "ATan", "alpha": 2.0, "spiking": False}) == S.ATan(2.0, False)
    assert S.get_surrogate({"name": "MultiLevelSpikeCount", "max_spike_count": 3, "grad_min": -0.5,
                            "grad_max": 3.5}) == S.MultiLevelSpikeCount(3, grad_window=(-0.5, 3.5))
    assert S.get_surrogate({"name": "FakeNumericalGradient", "alpha": 0.3, "spiking": False}).spiking is False
    assert set(S.__all__) >= {"heaviside", "get_surrogate", "SurrogateFunction", *S.SURROGATES}
    assert list(S.SURROGATES)[:2] == ["Sigmoid", "ATan"] and len(S.SURROGATES) == 19


def test_fused_ids():
    assert S.fused_surrogate_id(S.Sigmoid()) == 0
    assert S.fused_surrogate_id(S.Erf(1.5)) == 6
    assert S.fused_surrogate_id(S.ATan(spiking=False)) is None
    assert S.fused_surrogate_id(S.Rect()) is None
