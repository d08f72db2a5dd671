"""The non-finite policy (docs/policy.md), for every neuron class of the registry and every
surrogate: NaN in gives NaN out, +-inf give the limit and the neuron recovers, huge finite inputs
give finite states and gradients, and the kernel path agrees with the scan path on all of it."""
import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import registry
from snnjax import kernels, neuron
from snnjax import surrogate as sg

NEURONS = [e for e in registry.entries() if e.is_neuron]
ELEMENTWISE = [e for e in NEURONS if e.is_elementwise]


def _ids(entries):
    return [e.name for e in entries]


def _module(e, backend="scan"):
    takes_mode = "step_mode" in registry.ctor_params(e.cls)
    return registry.build(e, backend, **({"step_mode": "m"} if takes_mode else {}))


def _seq(e, m, special=None):
    """A [T, *step_shape] input (T: the module's own, else 4) with ``special`` = {(t, i): value}
    on the flattened neuron index ``i``."""
    T = getattr(m, "T", 4)
    shape = (T,) + e.step_shape
    x = 0.4 + 0.5 * np.cos(np.arange(np.prod(shape)).reshape(shape)).astype(np.float32)
    flat = x.reshape(T, -1)
    for (t, i), value in (special or {}).items():
        flat[t, i] = value
    return jnp.asarray(flat.reshape(shape))


def _run(m, x):
    final, out = m.multi_step(m.init_state(x[0]), x)
    return final, out


def _leaves(tree):
    return [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]


@pytest.mark.parametrize("e", NEURONS, ids=_ids(NEURONS))
def test_nan_in_gives_nan_out(e):
    m = _module(e)
    x = _seq(e, m, {(1, 0): np.nan})
    final, out = _run(m, x)
    o = np.asarray(jax.tree_util.tree_leaves(out)[0], np.float64)
    if o.shape[:1] == x.shape[:1] and o.ndim == x.ndim:      # a sequence: [T, N, *]
        assert np.isnan(o[1].reshape(-1)[0]), f"{e.name}: NaN input gave a valid-looking output"
        if not e.mixes_time:   # the PSN family mixes every step (a matrix product over time)
            assert not np.isnan(o[0]).any(), f"{e.name}: NaN leaked into an earlier step"
    else:                                                     # decoded over time: [N, *]
        assert np.isnan(o.reshape(-1)[0])
    per_neuron = [a for a in _leaves(final) if a.shape == x.shape[1:]]
    for a in per_neuron:
        assert np.isnan(a.reshape(-1)[0]), f"{e.name}: NaN input left a valid-looking state"
    if e.is_elementwise:   # the other neurons are untouched
        assert np.isfinite(o[1].reshape(-1)[1:]).all() if o.ndim == x.ndim else True


@pytest.mark.parametrize("e", NEURONS, ids=_ids(NEURONS))
def test_infinite_inputs_give_limits_and_recover(e):
    if e.nonfinite_exception:
        pytest.skip(e.nonfinite_exception)
    m = _module(e)
    x = _seq(e, m, {(0, 0): np.inf, (0, 1): -np.inf})
    final, out = _run(m, x)
    for a in _leaves(out):
        assert not np.isnan(a).any(), f"{e.name}: +-inf input gave NaN output"
    for a in _leaves(final):
        assert np.isfinite(a).all(), f"{e.name}: +-inf input left a non-finite state"


@pytest.mark.parametrize("name", ["IFNode", "LIFNode", "ParametricLIFNode", "SimpleIFNode"])
@pytest.mark.parametrize("backend", ["scan", "pallas"])
def test_hard_reset_recovers_from_inf(name, backend):
    """+inf fires and resets to v_reset exactly: the steps after it equal a fresh neuron's."""
    m = getattr(neuron, name)(step_mode="m", backend=backend)
    x = jnp.asarray([[np.inf, 0.3], [0.6, 0.6], [0.7, 0.7], [0.2, 0.2]], jnp.float32)
    _, out = _run(m, x)
    _, fresh = _run(m, x[1:])
    assert float(out[0, 0]) == 1.0
    np.testing.assert_array_equal(np.asarray(out[1:, 0]), np.asarray(fresh[:, 0]))


@pytest.mark.parametrize("e", NEURONS, ids=_ids(NEURONS))
def test_huge_finite_inputs_give_finite_states_and_gradients(e):
    if e.nonfinite_exception and "batch" in e.nonfinite_exception:
        pytest.skip(e.nonfinite_exception)
    m = _module(e)
    x = _seq(e, m, {(0, 0): 1e30, (1, 1): -1e30})

    def loss(x):
        final, out = _run(m, x)
        total = sum(jnp.sum(jnp.where(jnp.isfinite(a), a, 0.0)) for a in
                    jax.tree_util.tree_leaves((out, final))
                    if jnp.issubdtype(a.dtype, jnp.floating))
        return total, final

    (_, final), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
    for a in _leaves(final):
        assert np.isfinite(a).all(), f"{e.name}: 1e30 input left a non-finite state"
    assert np.isfinite(np.asarray(g)).all(), f"{e.name}: 1e30 input gave non-finite gradients"


@pytest.mark.parametrize("e", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_kernel_agrees_with_scan_on_nonfinite_inputs(e):
    """One call per class: NaN, +inf, -inf, 1e30 and ordinary values in different neurons."""
    scan_m, kern_m = _module(e, "scan"), _module(e, os.environ.get("SNNJAX_KERNEL_BACKEND", "pallas"))
    x = _seq(e, scan_m, {(1, 0): np.nan, (0, 1): np.inf, (0, 2): -np.inf, (0, 3): 1e30})
    want = _run(scan_m, x)
    got = jax.jit(lambda x: _run(kern_m, x))(x)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64),
                                   rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=e.name)


# --- surrogates ----------------------------------------------------------------------------------

def _surrogates():
    out = []
    for name in sg.__all__:
        cls = getattr(sg, name)
        if not (isinstance(cls, type) and issubclass(cls, sg.SurrogateFunction)) or \
                cls is sg.SurrogateFunction:
            continue
        inst = cls(2) if name == "MultiLevelSpikeCount" else cls()
        out.append(inst)
    return out


SURROGATES = _surrogates()


@pytest.mark.parametrize("s", SURROGATES, ids=[s.name for s in SURROGATES])
def test_surrogates_finite_at_the_dtype_limits(s):
    """Forward, gradient and derivative at -max, -1, 0, 1, +max in fp32, bf16 and fp16, in
    spiking and (where the class has one) primitive mode: all finite."""
    key = jax.random.key(0)
    modes = [s] + ([s.set_spiking_mode(False)] if s.has_primitive else [])

    def apply(f, x):
        return (f(x, key=key) if f.stochastic and f.spiking else f(x)).astype(jnp.float32)

    @jax.jit
    def probe(x):
        out = [apply(f, x) for f in modes]
        out += [jax.grad(lambda x, f=f: jnp.sum(apply(f, x)))(x).astype(jnp.float32)
                for f in modes]
        return out + [s.derivative(x).astype(jnp.float32)]

    for dtype in ("float32", "bfloat16", "float16"):
        big = float(jnp.finfo(dtype).max)
        for value in probe(jnp.asarray([-big, -1.0, 0.0, 1.0, big], dtype)):
            assert np.isfinite(np.asarray(value)).all(), f"{s} in {dtype} at +-max: {value}"


@pytest.mark.parametrize("s", SURROGATES, ids=[s.name for s in SURROGATES])
def test_surrogate_spike_of_nan_is_nan(s):
    x = jnp.asarray([np.nan, 1.0], jnp.float32)
    out = s(x, key=jax.random.key(0)) if s.stochastic else s(x)
    assert np.isnan(np.asarray(out)[0]) and not np.isnan(np.asarray(out)[1])


@pytest.mark.parametrize("s", SURROGATES, ids=[s.name for s in SURROGATES])
def test_spike_for_state_is_the_spike_without_the_nan_rule(s):
    """``sg(x) = propagate_nan(x, sg.spike_for_state(x))``, with the same gradient; where ``x``
    is NaN, ``spike_for_state`` is the forward's own value (NaN only where the forward keeps
    it, e.g. a clipped count)."""
    x = jnp.asarray([np.nan, -2.0, -0.0, 0.0, 0.3, 2.0, np.inf, -np.inf], jnp.float32)
    kw = {"key": jax.random.key(0)} if s.stochastic else {}
    raw = s.spike_for_state(x, **kw)
    np.testing.assert_array_equal(np.asarray(s(x, **kw)), np.asarray(sg.propagate_nan(x, raw)))
    np.testing.assert_array_equal(np.asarray(raw)[1:], np.asarray(s(x, **kw))[1:])
    if not s._forward_keeps_nan:
        assert not np.isnan(np.asarray(raw)).any()
    fin = x[1:6]
    grad = lambda f: jax.grad(lambda v: jnp.sum(f(v, **kw) * jnp.arange(1.0, 6.0)))(fin)
    np.testing.assert_array_equal(np.asarray(grad(s)), np.asarray(grad(s.spike_for_state)))


def test_propagate_nan_passes_the_gradient_of_s_only():
    x = jnp.asarray([np.nan, 1.0, -1.0])
    s = jnp.asarray([0.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(sg.propagate_nan(x, s)), [np.nan, 1.0, 0.0])
    gx, gs = jax.grad(lambda x, s: jnp.sum(sg.propagate_nan(x, s) * 2.0), argnums=(0, 1))(x, s)
    np.testing.assert_array_equal(np.asarray(gx), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(gs), [2.0, 2.0, 2.0])
    ints = jnp.asarray([1, 0])
    assert sg.propagate_nan(ints, ints) is not None and sg.propagate_nan(ints, ints).dtype == ints.dtype


def test_fused_backward_does_no_nan_test():
    """The hard-reset LIF's backward kernel recomputes the spike for the reset only: no NaN test
    (``x != x``) and no select of the NaN rule in it; the forward keeps it for the output."""
    m = neuron.LIFNode(step_mode="m", backend="pallas")
    T, N = 4, 512
    s0 = m.init_state(jnp.zeros((N,), jnp.bfloat16))
    loss = lambda x: jnp.sum(m.multi_step(s0, x)[1].astype(jnp.float32))
    with kernels.default_config(interpret=False):   # traced only, not lowered
        jaxpr = jax.make_jaxpr(jax.grad(loss))(jax.ShapeDtypeStruct((T, N), jnp.bfloat16))
    kernels_seen = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "pallas_call"]
    if not kernels_seen:   # under custom_vjp / jit: look one level down
        kernels_seen = [e for eqn in jaxpr.jaxpr.eqns for e in _inner_eqns(eqn)
                        if e.primitive.name == "pallas_call"]
    assert len(kernels_seen) == 2
    fwd, bwd = (str(e.params["jaxpr"]) for e in kernels_seen)
    assert " ne " in fwd and " ne " not in bwd


def _inner_eqns(eqn):
    for p in eqn.params.values():
        for sub in (p if isinstance(p, (list, tuple)) else [p]):
            j = getattr(sub, "jaxpr", sub)
            if hasattr(j, "eqns"):
                for e in j.eqns:
                    yield e
                    yield from _inner_eqns(e)


def test_policy_is_the_same_on_every_backend_for_int_inputs():
    x = jnp.asarray([[2, 0], [1, 1]], jnp.int32)
    outs = [neuron.LIFNode(step_mode="m", backend=b)(x) for b in ("scan", "pallas")]
    for o in outs:
        assert o.dtype == jnp.float32
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], neuron.LIFNode(step_mode="m")(x.astype(jnp.float32)))
    assert kernels.BACKENDS[:3] == ("auto", "scan", "pallas")
