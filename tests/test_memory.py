"""Memory options (issue 15): compact spike storage, the scan path's recomputing backward, Remat.

Every gradient is compared with the unoptimised path (compact storage off, plain scan). The
options re-run the same operations on the same values, but XLA fuses and orders the reductions
of the recomputed graph differently (conv weight gradients, batch-norm sums), so the documented
tolerance is fp32 rounding: |a - b| <= 2e-5 |b| + 2e-6 max|b| (measured: 1e-5 relative at most).
"""
RTOL, ATOL = 2e-5, 2e-6
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import _spikes, kernels, layer, neuron, surrogate
from snnjax.kernels import scan as scan_mod


def _cnn(channels, pools, *, remat=False, seed=0, backend="scan"):
    rngs = nnx.Rngs(seed)
    mods, cin = [], 3
    for i in range(len(pools)):
        block = [layer.SeqToANNContainer(layer.Conv2d(cin, channels, 3, padding=1, bias=False,
                                                      rngs=rngs),
                                         layer.BatchNorm2d(channels)),
                 neuron.LIFNode(step_mode="m", backend=backend, detach_reset=True,
                                surrogate_function=surrogate.ATan(alpha=3.0))]
        if pools[i]:
            block.append(layer.SeqToANNContainer(layer.MaxPool2d(2)))
        mods += [layer.Remat(*block)] if remat else block
        cin = channels
    return nnx.List(mods)


def _grads(model, x, *, store=True, recompute=True):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest, x):
        m = nnx.merge(graphdef, params, rest, copy=True)
        h = x
        for f in m:
            h = f(h)
        w = jnp.cos(jnp.arange(h.size, dtype=h.dtype)).reshape(h.shape)
        return (h * w).sum(), nnx.state(m, nnx.BatchStat)

    old = scan_mod.RECOMPUTE, scan_mod.RECOMPUTE_MIN_ELEMENTS
    scan_mod.RECOMPUTE, scan_mod.RECOMPUTE_MIN_ELEMENTS = recompute, 0   # at these small sizes too
    try:
        with _spikes.compact_storage(store):
            fn = jax.jit(jax.grad(loss, argnums=(0, 2), has_aux=True))
            compiled = fn.lower(params, rest, x).compile()
            (g_params, g_x), stats = compiled(params, rest, x)
            mem = compiled.memory_analysis().temp_size_in_bytes
    finally:
        scan_mod.RECOMPUTE, scan_mod.RECOMPUTE_MIN_ELEMENTS = old
    return jax.tree_util.tree_leaves(g_params) + [g_x], stats, mem


def _equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        u, v = np.asarray(u), np.asarray(v)
        np.testing.assert_allclose(u, v, rtol=RTOL, atol=ATOL * float(np.abs(v).max()))


def _equal_nan_gradients(got, want):
    """NaN in the same places, the rest equal within fp32 rounding; some NaN reached."""
    for u, v in zip(got, want):
        u, v = np.asarray(u), np.asarray(v)
        np.testing.assert_array_equal(np.isnan(u), np.isnan(v))
        np.testing.assert_allclose(u[~np.isnan(u)], v[~np.isnan(v)], rtol=RTOL,
                                   atol=ATOL * float(np.abs(v[~np.isnan(v)]).max(initial=1.0)))
    assert any(np.isnan(np.asarray(g)).any() for g in got)


@pytest.mark.parametrize("shape,channels,pools", [((3, 2, 8, 8, 3), 4, (True, False)),
                                                  ((2, 3, 4, 4, 3), 6, (False, True))])
def test_storage_and_scan_recompute_give_the_same_gradients(shape, channels, pools):
    x = jax.random.normal(jax.random.PRNGKey(1), shape) * 2.0
    model = _cnn(channels, pools)
    got, stats, mem = _grads(model, x)
    want, stats0, mem0 = _grads(model, x, store=False, recompute=False)
    _equal(got, want)
    assert mem < mem0         # compiled temp memory of the training gradient
    _equal(jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(stats0))
    assert any(float(jnp.abs(g).max()) > 0 for g in got)   # gradients reach every layer


def test_remat_same_gradients_and_batch_stats_updated_once():
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 8, 8, 3)) * 2.0
    plain, stats0, _ = _grads(_cnn(4, (True, False)), x)
    got, stats, _ = _grads(_cnn(4, (True, False), remat=True), x)
    _equal(got, plain)
    leaves = jax.tree_util.tree_leaves(stats)
    _equal(leaves, jax.tree_util.tree_leaves(stats0))
    counts = [int(v) for v in leaves if np.ndim(v) == 0]
    assert counts == [1, 1]        # num_batches_tracked of both batch norms: one update
    # the running mean is one momentum step from 0 towards the batch mean (NumPy reference)
    m = _cnn(4, (True, False))
    conv = m[0].layers[0]
    y = np.asarray(conv(x.reshape((6,) + x.shape[2:])))
    want = 0.1 * y.mean((0, 1, 2))
    np.testing.assert_allclose(np.asarray(leaves[1] if leaves[1].shape == (4,) else leaves[0]),
                               want, rtol=1e-5, atol=1e-6)


def _kernel_calls(jaxpr):
    """The ``pallas_call`` equations of ``jaxpr`` and of every jaxpr nested in it."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "pallas_call":
            found.append(eqn)
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _kernel_calls(inner)
    return found


@pytest.mark.filterwarnings("ignore:snnjax.kernels. falling back")   # Mosaic on a CPU
def test_remat_on_the_kernel_path_runs_each_forward_kernel_once_and_writes_in_place():
    """Inside ``Remat`` the recomputation keeps each neuron's chunk-start states and the pooling
    positions, so it re-runs no forward kernel (the spikes it would write are not needed), and
    the backward kernels write the input gradient into the cotangent's buffer; gradients and
    batch statistics equal those of the same network without ``Remat``."""
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 8, 8, 3)) * 2.0
    for backend in ("pallas", "mosaic"):
        plain, stats0, _ = _grads(_cnn(4, (True, False), backend=backend), x)
        got, stats, _ = _grads(_cnn(4, (True, False), remat=True, backend=backend), x)
        _equal(got, plain)
        _equal(jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(stats0))
        assert any(float(jnp.abs(g).max()) > 0 for g in got)
    model = _cnn(4, (True, False), remat=True, backend="pallas")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, x):
        h = x
        for f in nnx.merge(graphdef, params, rest, copy=True):
            h = f(h)
        return h.sum()
    calls = _kernel_calls(jax.make_jaxpr(jax.grad(loss))(params, x).jaxpr)
    # two neurons: one forward and one backward kernel each, the backward ones aliased
    assert len(calls) == 4, len(calls)
    assert sum(bool(e.params["input_output_aliases"]) for e in calls) == 2


@pytest.mark.skipif(kernels.on_gpu(), reason="Mosaic's interpret mode runs without a GPU")
def test_mosaic_interpreter_under_checkpoint_warns_and_runs_triton():
    """Mosaic's interpret mode (ordered callbacks) cannot run under ``jax.checkpoint``: inside
    ``Remat`` and ``Chunked`` an explicit ``backend='mosaic'`` warns once and runs the Triton
    interpreter, with the values of ``lax.scan``."""
    x = jax.random.normal(jax.random.PRNGKey(4), (5, 3, 7)) * 2.0
    rngs = nnx.Rngs(0)
    lin = layer.Linear(7, 6, step_mode="m", rngs=rngs)
    for wrap in (lambda *m: layer.Remat(*m), lambda *m: layer.Chunked(nnx.Sequential(*m), 2)):
        got = {}
        for backend in ("scan", "mosaic"):
            net = wrap(lin, neuron.LIFNode(step_mode="m", backend=backend))
            graphdef, params, rest = nnx.split(net, nnx.Param, ...)

            def loss(params, x):
                return jnp.sum(nnx.merge(graphdef, params, rest, copy=True)(x) * jnp.cos(x[..., :6]))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                got[backend] = jax.grad(loss, argnums=(0, 1))(params, x)
            if backend == "mosaic":
                assert any("cannot run under jax.checkpoint" in str(w.message) for w in caught)
        for a, b in zip(jax.tree_util.tree_leaves(got["mosaic"]),
                        jax.tree_util.tree_leaves(got["scan"])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nan_input_same_nan_gradients():
    rngs = nnx.Rngs(0)
    model = nnx.List([layer.SeqToANNContainer(layer.Conv2d(2, 3, 3, padding=1, rngs=rngs)),
                      neuron.LIFNode(step_mode="m", backend="scan"),
                      layer.SeqToANNContainer(layer.MaxPool2d(2)),
                      layer.SeqToANNContainer(layer.Conv2d(3, 2, 1, rngs=rngs))])
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (3, 2, 6, 6, 2))) * 3.0
    x[1, 0, 2, 3, 1] = np.nan
    got, _, _ = _grads(model, jnp.asarray(x))
    want, _, _ = _grads(model, jnp.asarray(x), store=False, recompute=False)
    _equal_nan_gradients(got, want)


def test_tags_follow_the_rule():
    x = jnp.ones((2, 3, 4))
    assert _spikes.is_binary(neuron.LIFNode(step_mode="m")(x))
    assert _spikes.is_binary(neuron.IFNode(step_mode="m", surrogate_function=surrogate.ATan())(x))
    assert not _spikes.is_binary(neuron.LIFNode(
        step_mode="m", surrogate_function=surrogate.MultiLevelSpikeCount(4))(x))
    assert not _spikes.is_binary(neuron.LIFNode(
        step_mode="m", surrogate_function=surrogate.Sigmoid(spiking=False))(x))
    assert not _spikes.is_binary(neuron.NonSpikingLIFNode()(x))
    assert not _spikes.is_binary(x)
    with _spikes.compact_storage(False):
        assert not _spikes.is_binary(neuron.LIFNode(step_mode="m")(x))


def test_bad_memory_options():
    with pytest.raises(ValueError, match="SeqToANNContainer: remat=True needs a block with "
                                         "parameters.*MaxPool2d"):
        layer.SeqToANNContainer(layer.MaxPool2d(2), remat=True)
    with pytest.raises(TypeError, match="SeqToANNContainer: remat must be"):
        layer.SeqToANNContainer(layer.MaxPool2d(2), remat=1)
    with pytest.raises(ValueError, match="Remat: rematerialisation needs a block with parameters"):
        layer.Remat(neuron.LIFNode(step_mode="m"), layer.SeqToANNContainer(layer.MaxPool2d(2)))
    with pytest.raises(ValueError, match="Remat: needs at least one module"):
        layer.Remat()


def test_kernel_backward_writes_the_input_gradient_into_the_cotangent_buffer():
    """With ``alias_cotangent=True`` the Triton backward aliases the spike cotangent with the
    input gradient (same ``[T, N]`` shape and dtype; each row is read before it is written):
    the compiled training step of Linear -> LIF -> Linear -> LIF needs less temp memory, with
    equal gradients. (Here the peak then moves to where other buffers are live, so about 0.6
    of the 1 MiB buffer is saved; in the SHD-shaped benchmark it is 26 MiB of 32.) Off by
    default: where the cotangent is an argument of the jitted function XLA copies it first."""
    T, B, H = 32, 64, 128   # the [T, B, H] buffers dominate the step's temp memory
    rngs = nnx.Rngs(0)
    net = nnx.List([layer.Linear(24, H, step_mode="m", rngs=rngs),
                    neuron.LIFNode(step_mode="m", backend="pallas"),
                    layer.Linear(H, 10, step_mode="m", rngs=rngs),
                    neuron.LIFNode(step_mode="m", backend="pallas")])
    x = 3.0 * jax.random.uniform(jax.random.PRNGKey(1), (T, B, 24))
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def loss(params, x):
        h = x
        for f in nnx.merge(graphdef, params, rest, copy=True):
            h = f(h)
        return jnp.sum(h.sum(0) * jnp.arange(10.0))

    def compiled_grads():
        c = jax.jit(jax.grad(loss)).lower(params, x).compile()
        return jax.tree_util.tree_leaves(c(params, x)), c.memory_analysis().temp_size_in_bytes

    g_plain, temp_plain = compiled_grads()
    with kernels.default_config(alias_cotangent=True):
        g_alias, temp_alias = compiled_grads()
    assert any(float(jnp.abs(g).max()) > 0 for g in g_plain)
    for a, b in zip(g_alias, g_plain):
        np.testing.assert_array_equal(a, b)
    buffer = T * B * H * 4
    assert temp_plain - temp_alias >= 0.5 * buffer, (temp_plain, temp_alias, buffer)


def _twin_memory(T, B, size, channels, pools):
    """Compiled memory (temp + argument + output - alias) of the parameter gradient of the LIF
    CNN (default backend, ``detach_reset``, ATan(3)) and of its ReLU twin written plainly."""
    rngs = nnx.Rngs(0)
    lif, relu, cin = [], [], 3
    for pool in pools:
        lif += [layer.SeqToANNContainer(layer.Conv2d(cin, channels, 3, padding=1, bias=False,
                                                     rngs=rngs), layer.BatchNorm2d(channels)),
                neuron.LIFNode(step_mode="m", detach_reset=True,
                               surrogate_function=surrogate.ATan(alpha=3.0))]
        relu += [nnx.Conv(cin, channels, (3, 3), padding=1, use_bias=False, rngs=rngs),
                 nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs), nnx.relu]
        if pool:
            lif.append(layer.SeqToANNContainer(layer.MaxPool2d(2)))
            relu.append(lambda h: nnx.max_pool(h, (2, 2), (2, 2)))
        cin = channels
    x = jax.random.normal(jax.random.PRNGKey(3), (T, B, size, size, 3))

    def total(model, x):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(params):
            h = x
            for f in nnx.merge(graphdef, params, rest, copy=True):
                h = f(h)
            return jnp.sum(h * jnp.cos(jnp.arange(h.size, dtype=h.dtype)).reshape(h.shape))
        ma = jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis()
        return (ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes
                - ma.alias_size_in_bytes)

    return total(nnx.List(lif), x), total(nnx.List(relu), x.reshape((T * B,) + x.shape[2:]))


@pytest.mark.parametrize("T,B,size,channels,pools", [(4, 8, 16, 16, (False, True, True)),
                                                     (3, 5, 12, 24, (True, False))])
def test_lif_cnn_needs_at_most_1_15x_the_memory_of_its_relu_twin_on_the_cpu(T, B, size,
                                                                            channels, pools):
    lif, relu = _twin_memory(T, B, size, channels, pools)
    assert lif <= 1.15 * relu, (lif / relu, lif, relu)


def _forward_checkpoints(model, x):
    graphdef, state = nnx.split(model)

    def run(state, x):
        h = x
        for f in nnx.merge(graphdef, state, copy=True):
            h = f(h)
        return h
    jaxpr = jax.make_jaxpr(run)(state, x)
    return sum(1 for e in jaxpr.jaxpr.eqns if e.primitive.name in ("checkpoint", "remat2"))


def test_binary_tag_passes_through_pooling_and_flatten_only():
    """Also on their own (not in a container): a container after them stores int8."""
    s = neuron.LIFNode(step_mode="m")(jnp.full((2, 3, 4, 4, 2), 1.5))
    assert _spikes.is_binary(layer.MaxPool2d(2, step_mode="m")(s))
    assert _spikes.is_binary(layer.Flatten(step_mode="m")(s))
    assert not _spikes.is_binary(layer.AvgPool2d(2, step_mode="m")(s))
    assert not _spikes.is_binary(layer.Conv2d(2, 2, 1, step_mode="m", rngs=nnx.Rngs(0))(s))


def test_a_container_stores_its_block_once():
    """One int8 copy of a ``SeqToANNContainer``'s spike input (after a standalone pooling
    layer too); the layers inside add no checkpoints of their own."""
    rngs = nnx.Rngs(0)
    model = nnx.List([layer.SeqToANNContainer(layer.Conv2d(2, 4, 3, padding=1, rngs=rngs)),
                      neuron.LIFNode(step_mode="m"),
                      layer.SeqToANNContainer(layer.MaxPool2d(2), layer.Conv2d(4, 4, 1, rngs=rngs),
                                              layer.BatchNorm2d(4)),
                      neuron.LIFNode(step_mode="m"),
                      layer.MaxPool2d(2, step_mode="m"),
                      layer.SeqToANNContainer(layer.Flatten(), layer.Linear(4, 3, rngs=rngs))])
    assert _forward_checkpoints(model, jnp.ones((3, 2, 4, 4, 2))) == 2
