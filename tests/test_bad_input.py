"""Bad input, for every neuron class of the registry: constructor arguments (at construction and
on reassignment) and call inputs get a clear error from snnjax naming the class, the argument,
the value and what is allowed; accepted inputs follow one policy on every backend."""
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import registry
from snnjax import neuron
from snnjax import surrogate as sg

NEURONS = [e for e in registry.entries() if e.is_neuron]
ELEMENTWISE = [e for e in NEURONS if e.is_elementwise]
IDS = [e.name for e in NEURONS]


def _sig(e):
    return registry.ctor_params(e.cls)


def _build(e, backend="scan", **kw):
    if "step_mode" in _sig(e) and "step_mode" not in kw:
        kw["step_mode"] = "m"
    return registry.build(e, backend if "backend" in _sig(e) else None, **kw)


def _x(e, m, T=None):
    T = T or getattr(m, "T", 4)
    shape = (T,) + e.step_shape
    return jnp.asarray(0.4 + 0.5 * np.cos(np.arange(np.prod(shape)).reshape(shape)), jnp.float32)


def _raises(exc, e, *fragments):
    """``pytest.raises`` whose message must name the class and every fragment."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *a):
            out = self.ctx.__exit__(*a)
            msg = str(self.info.value)
            for f in (e.name,) + fragments:
                assert f in msg, f"{f!r} not in the message {msg!r}"
            return out
    return _Check()


# --- constructor arguments ---------------------------------------------------------------------

def _flag_cases():
    out = []
    for e in NEURONS:
        for name, p in _sig(e).items():
            if isinstance(p.default, bool) and name not in e.kwargs:
                out.append(pytest.param(e, name, id=f"{e.name}-{name}"))
    return out


@pytest.mark.parametrize("e, flag", _flag_cases())
def test_boolean_flags_must_be_bools(e, flag):
    with _raises(TypeError, e, flag, "True or False", "1"):
        _build(e, **{flag: 1})


def _float_cases():
    out = []
    for e in NEURONS:
        for name, p in _sig(e).items():
            if type(p.default) is float and name not in e.kwargs:
                out.append(pytest.param(e, name, id=f"{e.name}-{name}"))
    return out


@pytest.mark.parametrize("e, arg", _float_cases())
def test_real_arguments_reject_nan_inf_and_strings(e, arg):
    for bad in (math.nan, math.inf):
        with _raises(ValueError, e, arg):
            _build(e, **{arg: bad})
    with _raises(TypeError, e, arg):
        _build(e, **{arg: "1.0"})


@pytest.mark.parametrize("e", [e for e in NEURONS if ("tau" in _sig(e) or "init_tau" in _sig(e))
                               and e.name != "GatedLIFNode"], ids=lambda e: e.name)
def test_time_constants_follow_the_reference_rules(e):
    """LIF-family ``tau`` / ``init_tau`` > 1 (SpikingJelly asserts it); DSR's ``tau`` > 0.
    (GLIF's ``init_tau`` is a gate in (0, 1), covered by ``test_ranges``.)"""
    name = "tau" if "tau" in _sig(e) else "init_tau"
    low = 0.0 if e.name.startswith("DSR") else 1.0
    for bad in (low, low - 0.5, -2.0):
        with _raises(ValueError, e, name, f"> {low}"):
            _build(e, **{name: bad})
    m = _build(e, **{name: low + 0.5})
    if name == "tau":   # reassignment is checked too
        with _raises(ValueError, e, name):
            m.tau = low


@pytest.mark.parametrize("e", [e for e in NEURONS if "v_reset" in _sig(e)
                               and "v_threshold" in _sig(e)], ids=lambda e: e.name)
def test_reset_must_lie_below_the_threshold(e):
    with _raises(ValueError, e, "v_threshold must be > v_reset"):
        _build(e, v_threshold=0.5, v_reset=0.5)
    m = _build(e, v_threshold=1.0, v_reset=0.0)
    with _raises(ValueError, e, "v_threshold must be > v_reset"):
        m.v_reset = 2.0
    if e.name != "SimpleLIFNode":   # it has no soft reset (the charge decays towards v_reset)
        _build(e, v_threshold=-0.5, v_reset=None)   # soft reset: no order


@pytest.mark.parametrize("e", [e for e in NEURONS if "backend" in _sig(e)], ids=lambda e: e.name)
def test_backend_from_its_set(e):
    with _raises(ValueError, e, "backend", "'cuda'", "'scan'"):
        _build(e, backend="cuda")
    m = _build(e)
    with _raises(ValueError, e, "backend"):
        m.backend = "gpu"


@pytest.mark.parametrize("e", [e for e in NEURONS if "step_mode" in _sig(e)], ids=lambda e: e.name)
def test_step_mode_from_its_set(e):
    with _raises(ValueError, e, "step_mode", "'x'"):
        _build(e, step_mode="x")


@pytest.mark.parametrize("e", [e for e in NEURONS if "surrogate_function" in _sig(e)],
                         ids=lambda e: e.name)
def test_surrogate_class_instead_of_instance(e):
    with _raises(TypeError, e, "surrogate_function", "ATan()"):
        _build(e, surrogate_function=sg.ATan)
    with _raises(TypeError, e, "surrogate_function"):
        _build(e, surrogate_function=3.0)


@pytest.mark.parametrize("make, exc, fragment", [
    (lambda: neuron.CUBALIFNode(c_decay=1.5), ValueError, "c_decay must be in [0.0, 1.0]"),
    (lambda: neuron.CUBALIFNode(v_decay=-0.1), ValueError, "v_decay must be in [0.0, 1.0]"),
    (lambda: neuron.MPBNLIFNode(out_features=3, bn_momentum=2.0), ValueError,
     "bn_momentum must be in [0.0, 1.0]"),
    (lambda: neuron.MPBNLIFNode(out_features=3, bn_min_momentum=-1.0), ValueError,
     "bn_min_momentum must be in [0.0, 1.0]"),
    (lambda: neuron.IzhikevichNode(tau_w=0.0), ValueError, "tau_w must be > 0.0"),
    (lambda: neuron.NoisyCUBALIFNode(4, sigma_init=-1.0), ValueError, "sigma_init must be >= 0"),
    (lambda: neuron.NoisyCUBALIFNode(0), ValueError, "num_node"),
    (lambda: neuron.PSN(T=0), ValueError, "T"),
    (lambda: neuron.GatedLIFNode(T=4, init_tau=1.5, rngs=nnx.Rngs(0)), ValueError,
     "init_tau must be in (0.0, 1.0)"),
    (lambda: sg.Sigmoid(alpha=-4.0), ValueError, "Sigmoid: alpha must be > 0"),
    (lambda: sg.ATan(alpha=0.0), ValueError, "ATan: alpha must be > 0"),
    (lambda: sg.S2NN(beta=-1.0), ValueError, "S2NN: beta must be > 0"),
    (lambda: sg.Rect(alpha=float("inf")), ValueError, "Rect: alpha must be finite"),
])
def test_ranges(make, exc, fragment):
    with pytest.raises(exc) as info:
        make()
    assert fragment in str(info.value)


def test_powerlaw_exponent_must_be_finite():
    from snnjax.noise import powerlaw_psd_gaussian
    with pytest.raises(ValueError, match="exponent must be a finite number"):
        powerlaw_psd_gaussian(float("nan"), (2, 8), key=jax.random.key(0))


# --- call inputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("e", NEURONS, ids=IDS)
def test_lists_ints_and_bools_follow_one_policy(e):
    """Nested lists are arrays; int and bool inputs are cast to float32 (output float32)."""
    m = _build(e)
    x = _x(e, m)
    run = jax.jit(lambda x: m.multi_step(m.init_state(x[0]), x)[1])
    want = run(x)
    got = m.multi_step(m.init_state(x[0]), np.asarray(x).tolist())[1]
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    xi = (x > 0.4).astype(jnp.int32)
    want_f = run(xi.astype(jnp.float32))
    for a, w in zip(jax.tree_util.tree_leaves(run(xi)), jax.tree_util.tree_leaves(want_f)):
        assert a.dtype == w.dtype == jnp.float32
        np.testing.assert_array_equal(a, w)


def test_bool_inputs_are_cast_like_ints():
    m = neuron.LIFNode(step_mode="m", backend="scan")
    x = jnp.asarray([[True, False], [True, True]])
    out = m.multi_step(m.init_state(x[0]), x)[1]
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, m.multi_step(m.init_state(x[0]), x.astype(jnp.float32))[1])


@pytest.mark.parametrize("e", NEURONS, ids=IDS)
def test_complex_rank_and_empty_time_are_rejected(e):
    m = _build(e)
    x = _x(e, m)
    with _raises(TypeError, e, "complex"):
        m.multi_step(m.init_state(x[0]), x.astype(jnp.complex64))
    with _raises(ValueError, e, "step_mode='m'", "[T, N, *]"):
        m.multi_step(m.init_state(x[0]), x[0, 0])
    if getattr(m, "T", None) is None:   # classes with a constructor T reject other lengths
        with _raises(ValueError, e, "T = 0"):
            m.multi_step(m.init_state(x[0]), x[:0])


@pytest.mark.parametrize("e", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_zero_neurons_give_an_empty_output_on_every_backend(e):
    for backend in ("scan", "pallas"):
        m = _build(e, backend)
        x = _x(e, m)[:, :0]
        final, out = m.multi_step(m.init_state(x[0]), x)
        for leaf in jax.tree_util.tree_leaves(out):
            assert leaf.size == 0 and leaf.shape[:2] == (x.shape[0], 0)


@pytest.mark.parametrize("e", NEURONS, ids=IDS)
def test_state_must_match_the_input(e):
    m = _build(e)
    x = _x(e, m)
    state = m.init_state(x[0])
    if not isinstance(state, dict) or not state:
        pytest.skip("no dict state")
    name = sorted(k for k in state if k != "stats")[0]
    if len(state) > 1 or not e.mixes_time:   # the PSN family's multi-step accepts {} (unused)
        with _raises(ValueError, e, name):
            m.multi_step({k: v for k, v in state.items() if k != name}, x)
    wrong = dict(state)
    wrong[name] = jnp.zeros(np.shape(state[name])[:-1] + (np.shape(state[name])[-1] + 1,))
    with _raises(ValueError, e, name, str(tuple(wrong[name].shape))):
        m.multi_step(wrong, x)


POPULATION = [e for e in NEURONS if e.step_shape != (2, 5)]


@pytest.mark.parametrize("e", POPULATION, ids=[e.name for e in POPULATION])
def test_population_size_is_checked(e):
    m = _build(e)
    x = _x(e, m)
    x = jnp.concatenate([x, x[..., :1]], axis=-1)
    with pytest.raises(ValueError) as info:
        m.multi_step(m.init_state(x[0]), x)
    assert e.name in str(info.value) and str(x.shape[-1] - 1) in str(info.value)


@pytest.mark.parametrize("e", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_kernel_path_rejects_what_scan_rejects(e):
    m = _build(e, "pallas")
    x = _x(e, m)
    state = m.init_state(x[0])
    if isinstance(state, dict) and state:
        name = sorted(state)[0]
        bad = {**state, name: jnp.zeros((3,) + np.shape(state[name]))}
        with _raises(ValueError, e, name):
            m.multi_step(bad, x)
    with _raises(TypeError, e, "complex"):
        m.multi_step(state, x.astype(jnp.complex64))
