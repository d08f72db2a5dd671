"""MPBNBaseNode / MPBNLIFNode against SpikingJelly 2.0.0 data, plus folding, train/eval, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import neuron
from golden_utils import case_names

CASES = case_names("MPBNLIFNode")




def _build(case, step_mode="m"):
    """The module of a case, in the case's train/eval mode, folded as the case says."""
    m = neuron.MPBNLIFNode(**case.kwargs, step_mode=step_mode,
                           use_running_average=not case.meta["train_mode"])
    if "folded" in case.name:
        m.re_parameterize_v_threshold(normalize_residual="normalize_residual" in case.name,
                                      running_stats="running_stats" in case.name)
    return m












def test_worked_example_fp32():
    """Spec research-mpbn.md, worked example (float32, fresh module, train then eval)."""
    x = jnp.asarray([[[0.5, 1.2], [1.5, -0.3], [0.1, 0.9]],
                     [[1.0, 0.2], [-0.5, 0.8], [2.0, 1.1]],
                     [[0.3, 0.3], [0.7, -1.0], [1.2, 0.5]]], jnp.float32)
    m = neuron.MPBNLIFNode(out_features=2, step_mode="m")
    s = m(x)
    np.testing.assert_array_equal(np.asarray(s).ravel(),
                                  [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(m.v.ravel(), [-0.248794, 0.576679, -1.08122, -1.406626, 0,
                                             0.829947], atol=2e-6)
    np.testing.assert_allclose(m.vbn.running_mean.get_value(), [0.166863, 0.083932], atol=2e-6)
    np.testing.assert_allclose(m.vbn.running_var.get_value(), [0.898859, 0.945292], atol=2e-6)
    assert int(m.vbn.num_batches_tracked.get_value()) == 3
    m.eval()
    assert m.use_running_average and not m.training
    m.reset()
    s = m(x)
    np.testing.assert_array_equal(np.asarray(s).ravel(),
                                  [0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(m.v.ravel(), [0.140427, 0.283623, 0.191384, -0.840534, 0,
                                             0.427936], atol=2e-6)
    assert int(m.vbn.num_batches_tracked.get_value()) == 3  # eval does not advance
    m.train()
    assert m.training
    m(x)
    assert int(m.vbn.num_batches_tracked.get_value()) == 6


def _trained_module(shape_kw, x_train, seed=0, **kw):
    """A module whose BN has non-trivial statistics and affine parameters (gamma > 0)."""
    rng = np.random.default_rng(seed)
    m = neuron.MPBNLIFNode(**shape_kw, step_mode="m", **kw)
    C = m.num_features
    m.vbn.weight.set_value(jnp.asarray(rng.uniform(0.6, 1.5, C), jnp.float32))
    m.vbn.bias.set_value(jnp.asarray(rng.uniform(-0.3, 0.3, C), jnp.float32))
    m(x_train)  # advance the running statistics
    m.reset()
    return m


@pytest.mark.parametrize("shape_kw,shape", [({"out_features": 5}, (6, 16, 5)),
                                            ({"out_channels": 3}, (5, 4, 3, 3, 3))])
def test_folding_reproduces_unfolded_eval(shape_kw, shape):
    """Folded with normalize_residual, eval, hard reset to 0: every step equals the unfolded
    eval neuron (spikes exactly, membrane to rounding). Plain folding: the first step agrees."""
    rng = np.random.default_rng(1)
    x_train = jnp.asarray(0.8 + rng.standard_normal(shape), jnp.float32)
    x = jnp.asarray(0.8 + rng.standard_normal(shape), jnp.float32)
    m = _trained_module(shape_kw, x_train)
    m.eval()
    ref = m(x)
    ref_v = m.v.get_value()  # a snapshot: m.v is the state variable, reset in place below
    m.reset()

    folded = nnx.clone(m)
    folded.re_parameterize_v_threshold(normalize_residual=True)
    assert folded.vbn is None and folded.fold_bn
    np.testing.assert_array_equal(folded.gamma.get_value(), m.vbn.weight.get_value())
    np.testing.assert_array_equal(folded.mu.get_value(), m.vbn.running_mean.get_value())
    out = folded(x)
    assert 0.05 < float(ref.mean()) < 0.95
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(folded.v, ref_v, atol=1e-5)

    plain = nnx.clone(m)
    plain.re_parameterize_v_threshold()
    out = plain(x)
    np.testing.assert_array_equal(out[0], ref[0])
    assert not np.array_equal(np.asarray(plain.v), np.asarray(ref_v))  # stores the raw membrane


def test_folding_is_noop_without_bn_and_one_shot():
    m = neuron.MPBNLIFNode(mpbn=False, out_features=4)
    m.re_parameterize_v_threshold()
    assert not m.fold_bn and m.vbn is None
    m = neuron.MPBNLIFNode(out_features=4)
    m.re_parameterize_v_threshold()
    gamma = m.gamma
    m.re_parameterize_v_threshold(normalize_residual=True)  # vbn gone: nothing happens
    assert m.gamma is gamma and not m.normalize_residual


def test_folding_learnable_threshold():
    """exp(a) becomes the fixed [C] threshold; 'a' disappears; gamma/beta are Params, mu/sigma2
    BatchStats; a 4-D soft-reset neuron still runs (per-channel reset threshold)."""
    m = neuron.MPBNLIFNode(out_channels=3, learnable_vth=True, v_reset=None, step_mode="m")
    assert isinstance(m.a, nnx.Param) and m.a.get_value().shape == (3,)
    m.a.set_value(jnp.asarray([0.1, -0.2, 0.3], jnp.float32))
    m.re_parameterize_v_threshold()
    assert not hasattr(m, "a") and not m.learnable_vth
    np.testing.assert_allclose(m.v_threshold, np.exp([0.1, -0.2, 0.3]), rtol=1e-6)
    assert isinstance(m.gamma, nnx.Param) and isinstance(m.mu, nnx.BatchStat)
    assert {p for p, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))} == {("gamma",), ("beta",)}
    x = jnp.asarray(np.random.default_rng(0).normal(0.8, 1.0, (4, 2, 3, 5, 6)), jnp.float32)
    out = m(x)
    assert out.shape == x.shape
    # soft reset subtracts the per-channel threshold
    m2 = nnx.clone(m)
    m2.reset()
    st, o = m2.step(m2.init_state(x[0]), x[0])
    h = (x[0] - 0.0 / 2.0)  # v starts at 0: H = X
    # training mode: this step's batch statistics
    vth = ((m.v_threshold - m.beta.get_value()) * np.sqrt(st["stats"]["sigma2"] + m.eps)
           / m.gamma.get_value() + st["stats"]["mu"])
    np.testing.assert_array_equal(o, (h - vth[None, :, None, None] >= 0))
    np.testing.assert_allclose(st["v"], h - o * m.v_threshold[None, :, None, None], atol=1e-6)


def test_learnable_threshold_quirk_soft_reset_uses_constructor_threshold():
    """Firing at exp(a) (starts at 1 whatever v_threshold is), soft reset by v_threshold."""
    m = neuron.MPBNLIFNode(out_features=2, learnable_vth=True, mpbn=False, v_threshold=0.5,
                           v_reset=None)
    x = jnp.asarray([[0.7, 1.2], [0.2, 1.0]], jnp.float32)
    st, s = m.step(m.init_state(x), x)
    np.testing.assert_array_equal(s, [[0, 1], [0, 1]])
    np.testing.assert_allclose(st["v"], x - 0.5 * s)


def test_tta_statistics_and_running_stats():
    """Folded training: mu/sigma2 = this step's batch statistics (unbiased, detached), or a
    momentum average whose momentum decays by bn_decay_momentum per step down to the floor;
    skipped for a 2-D batch of one."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(0.5, 1.0, (3, 8, 4)), jnp.float32)
    m = neuron.MPBNLIFNode(out_features=4, step_mode="m", bn_min_momentum=0.09)
    m.re_parameterize_v_threshold()
    st, _ = m.multi_step(m.init_state(x[0]), x, return_state_seq=True)
    # running_stats=False: mu at step 0 = batch mean of H = X (v starts at 0)
    np.testing.assert_allclose(st["stats"]["mu"][0], x[0].mean(0), rtol=1e-6)
    np.testing.assert_allclose(st["stats"]["sigma2"][0], x[0].var(0, ddof=1), rtol=1e-5)

    m.running_stats = True
    st, _ = m.multi_step(m.init_state(x[0]), x, return_state_seq=True)
    np.testing.assert_allclose(st["stats"]["mu"][0], 0.9 * 0.0 + 0.1 * x[0].mean(0), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(st["stats"]["bn_momentum"], [0.094, 0.09, 0.09], rtol=1e-6)
    m(x)
    np.testing.assert_allclose(m.bn_momentum.get_value(), 0.09, rtol=1e-6)

    m1 = neuron.MPBNLIFNode(out_features=4)
    m1.re_parameterize_v_threshold()
    st, _ = m1.step(m1.init_state(x[0, :1]), x[0, :1])
    np.testing.assert_array_equal(st["stats"]["mu"], m1.mu.get_value())  # N = 1: skipped


def test_stats_not_reset_and_eval_uses_running_stats():
    x = jnp.asarray(np.random.default_rng(4).normal(0.8, 1.0, (4, 6, 3)), jnp.float32)
    m = neuron.MPBNLIFNode(out_features=3, step_mode="m")
    m(x)
    rm = m.vbn.running_mean.get_value()
    m.reset()
    np.testing.assert_array_equal(m.vbn.running_mean.get_value(), rm)
    assert m.state["v"].shape == ()  # back to the declared (scalar) initial membrane
    # the pure API never mutates the module
    m.multi_step(m.init_state(x[0]), x)
    np.testing.assert_array_equal(m.vbn.running_mean.get_value(), rm)
    # eval normalises with the running statistics: one step by hand
    m.eval()
    st, s = m.step(m.init_state(x[0]), x[0])
    h = (x[0] - rm) / np.sqrt(m.vbn.running_var.get_value() + 1e-5)
    np.testing.assert_array_equal(s, h >= 1.0)


def test_vmap_over_populations_and_grad():
    """vmap over a leading population axis = independent neurons (BN per population)."""
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(0.8, 1.0, (3, 4, 8, 2)), jnp.float32)
    m = neuron.MPBNLIFNode(out_features=2)

    @jax.jit
    def run(x):
        return m.multi_step(m.init_state(x[0]), x)[1]

    batched = jax.jit(jax.vmap(run))(xs)
    for p in range(3):
        np.testing.assert_array_equal(batched[p], run(xs[p]))
    # vmap over a parameter (tau) as well
    taus = jnp.asarray([1.5, 2.0, 4.0])
    outs = jax.jit(jax.vmap(lambda t: m.multi_step(m.init_state(xs[0, 0]), xs[0],
                                                   {"tau": t})[1]))(taus)
    np.testing.assert_array_equal(outs[1], run(xs[0]))

    def loss(p, x):
        return m.multi_step(m.init_state(x[0]), x, p)[1].sum()
    g = jax.jit(jax.grad(loss))(m.params(), xs[0])
    assert np.all(np.isfinite(g["vbn_weight"])) and np.any(g["vbn_weight"] != 0)


def test_store_v_seq_and_single_equals_multi():
    x = jnp.asarray(np.random.default_rng(6).normal(0.8, 1.0, (5, 6, 3)), jnp.float32)
    m = neuron.MPBNLIFNode(out_features=3, step_mode="m", store_v_seq=True)
    out = m(x)
    s = neuron.MPBNLIFNode(out_features=3, step_mode="s", store_v_seq=True)
    outs = jnp.stack([s(x[t]) for t in range(5)])
    np.testing.assert_array_equal(out, outs)
    np.testing.assert_allclose(m.v_seq, s.v_seq, atol=1e-6)
    assert m.v_seq.shape == x.shape
    np.testing.assert_allclose(m.v_seq[-1], m.v)
    # two compiled programs (the scan, the single step) may fuse the batch mean differently
    np.testing.assert_allclose(m.vbn.running_mean.get_value(),
                               s.vbn.running_mean.get_value(), rtol=1e-6, atol=1e-7)


def test_bf16_input_fp32_state():
    x = jnp.asarray(np.random.default_rng(7).normal(0.8, 1.0, (3, 4, 2)), jnp.bfloat16)
    m = neuron.MPBNLIFNode(out_features=2, step_mode="m")
    out = m(x)
    assert out.dtype == jnp.bfloat16 and m.v.dtype == jnp.float32


def test_base_node_is_abstract():
    m = neuron.MPBNBaseNode(out_features=2)
    with pytest.raises(NotImplementedError):
        m(jnp.ones((3, 2)))


@pytest.mark.parametrize("kwargs,match", [
    ({}, "exactly one of out_features"),
    ({"out_features": 2, "out_channels": 2}, "exactly one of out_features"),
    ({"mpbn": False}, "exactly one of out_features"),
    ({"out_features": 0}, "out_features must be a positive int"),
    ({"out_features": 2.0}, "out_features must be a positive int"),
    ({"out_features": 2, "tau": 1.0}, "tau must be > 1"),
    ({"out_features": 2, "backend": "pallas"}, "backend must be one of"),
    ({"out_features": 2, "step_mode": "x"}, "step_mode must be one of"),
    ({"out_features": 2, "mpbn": 1}, "mpbn must be True or False"),
    ({"out_features": 2, "learnable_vth": "yes"}, "learnable_vth must be True or False"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        neuron.MPBNLIFNode(**kwargs)


def test_bad_inputs():
    m = neuron.MPBNLIFNode(out_features=3)
    with pytest.raises(ValueError, match="channels on axis 1"):
        m(jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        m(jnp.ones((1, 3)))
    c = neuron.MPBNLIFNode(out_channels=3)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        c(jnp.ones((4, 3)))
    with pytest.raises(TypeError, match="normalize_residual must be True or False"):
        m.re_parameterize_v_threshold(normalize_residual=None)
    m(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="reset"):
        m(jnp.ones((5, 3)))
