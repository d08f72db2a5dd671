"""snnjax.layer: containers, Dropout and the channels-last step-mode layers against NumPy
implementations of PyTorch's / SpikingJelly's definitions."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import functional, layer, neuron


def _rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


# --- NumPy references (PyTorch semantics, NHWC) -------------------------------------------------

def np_conv2d(x, w, b, stride, pad, dilation, groups):
    """x [B, H, W, C], w [kh, kw, C/g, O] -> [B, H', W', O]; symmetric zero padding ``pad``."""
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    x = np.pad(x.astype(np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    B, H, W, Cin = x.shape
    kh, kw, cg, O = w.shape
    oh = (H - dh * (kh - 1) - 1) // sh + 1
    ow = (W - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((B, oh, ow, O))
    og = O // groups
    for g in range(groups):
        xs = x[..., g * cg:(g + 1) * cg]
        ws = w[..., g * og:(g + 1) * og].astype(np.float64)
        for i in range(oh):
            for j in range(ow):
                patch = xs[:, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, i, j, g * og:(g + 1) * og] = np.einsum("buvc,uvco->bo", patch, ws)
    return out + (0 if b is None else b)


def _torch_out(n, k, s, p, d, ceil):
    num = n + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def np_max_pool(x, k, s, p, d, ceil):
    """PyTorch's max_pool2d loop (NHWC): window starts at o*s - p, padded cells excluded."""
    B, H, W, C = x.shape
    oh, ow = _torch_out(H, k[0], s[0], p[0], d[0], ceil), _torch_out(W, k[1], s[1], p[1], d[1], ceil)
    out = np.full((B, oh, ow, C), -np.inf)
    for i in range(oh):
        for j in range(ow):
            for u in range(k[0]):
                for v in range(k[1]):
                    h, w = i * s[0] - p[0] + u * d[0], j * s[1] - p[1] + v * d[1]
                    if 0 <= h < H and 0 <= w < W:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, h, w])
    return out


def np_avg_pool(x, k, s, p, ceil, count_include_pad, divisor_override):
    """PyTorch's avg_pool2d loop (NHWC)."""
    B, H, W, C = x.shape
    oh, ow = _torch_out(H, k[0], s[0], p[0], 1, ceil), _torch_out(W, k[1], s[1], p[1], 1, ceil)
    out = np.zeros((B, oh, ow, C))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            he, we = min(hs + k[0], H + p[0]), min(ws + k[1], W + p[1])
            pool = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, H), min(we, W)
            total = x[:, hs:he, ws:we].astype(np.float64).sum((1, 2))
            div = divisor_override or (pool if count_include_pad else (he - hs) * (we - ws))
            out[:, i, j] = total / div
    return out


def np_adaptive_avg(x, oh, ow):
    B, H, W, C = x.shape
    out = np.zeros((B, oh, ow, C))
    for i in range(oh):
        h0, h1 = math.floor(i * H / oh), math.ceil((i + 1) * H / oh)
        for j in range(ow):
            w0, w1 = math.floor(j * W / ow), math.ceil((j + 1) * W / ow)
            out[:, i, j] = x[:, h0:h1, w0:w1].astype(np.float64).mean((1, 2))
    return out


# --- containers ---------------------------------------------------------------------------------

def test_seq_to_ann_container_folds_time_and_keeps_layers():
    r = nnx.Rngs(0)
    lin = nnx.Linear(5, 3, rngs=r)
    c = layer.SeqToANNContainer(lin, nnx.relu)
    assert isinstance(c.layers, nnx.List) and c.layers[0] is lin
    x = _rand((4, 3, 5))
    y = c(x)
    k, b = np.asarray(lin.kernel.get_value(), np.float64), np.asarray(lin.bias.get_value())
    np.testing.assert_allclose(y, np.maximum(x @ k + b, 0), rtol=1e-5, atol=1e-6)
    assert y.shape == (4, 3, 3)


def test_batchnorm_in_seq_to_ann_normalises_over_time_and_batch_and_uses_running_stats_in_eval():
    r = nnx.Rngs(0)
    x = _rand((3, 5, 4, 4, 2), 1) * 2 + 1
    flat = x.reshape(-1, 2).astype(np.float64)
    mu, var = flat.mean(0), flat.var(0)
    # plain nnx.BatchNorm (Flax conventions) and layer.BatchNorm2d (PyTorch conventions)
    for bn, new_rm, new_rv in [
        (nnx.BatchNorm(2, momentum=0.9, epsilon=1e-5, rngs=r), 0.1 * mu, 0.9 + 0.1 * var),
        (layer.BatchNorm2d(2), 0.1 * mu, 0.9 + 0.1 * var * flat.shape[0] / (flat.shape[0] - 1)),
    ]:
        c = layer.SeqToANNContainer(bn)
        y = c(x)
        np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
        mean_var = (bn.mean, bn.var) if isinstance(bn, nnx.BatchNorm) else (bn.running_mean, bn.running_var)
        np.testing.assert_allclose(mean_var[0].get_value(), new_rm, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mean_var[1].get_value(), new_rv, rtol=1e-5)
        c.eval()
        y_eval = c(x)
        np.testing.assert_allclose(y_eval, (x - new_rm) / np.sqrt(new_rv + 1e-5), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mean_var[0].get_value(), new_rm, rtol=1e-5, atol=1e-6)  # frozen


def test_multi_step_container_runs_single_step_modules_step_by_step():
    x = _rand((6, 3, 4), 2) + 0.8
    c = layer.MultiStepContainer(neuron.LIFNode(tau=2.0))
    ref = neuron.LIFNode(tau=2.0, step_mode="m")
    np.testing.assert_array_equal(c(x), ref(x))
    np.testing.assert_array_equal(c.layers[0].v.get_value(), ref.v.get_value())
    functional.reset_net(c)
    assert c.layers[0].v.get_value().shape == ()


def test_containers_refuse_multi_step_members_and_non_callables():
    for cls in (layer.SeqToANNContainer, layer.MultiStepContainer):
        with pytest.raises(ValueError, match="step_mode='s'"):
            cls(neuron.IFNode(step_mode="m"))
        with pytest.raises(TypeError, match="callable"):
            cls(3)
    with pytest.raises(ValueError, match=r"\[T, B"):
        layer.SeqToANNContainer(nnx.relu)(jnp.ones((3,)))


# --- Dropout ------------------------------------------------------------------------------------

def test_dropout_mask_is_drawn_once_shared_over_time_and_renewed_by_reset_net():
    p = 0.3
    d = layer.Dropout(p, step_mode="m", rngs=nnx.Rngs(0))
    x = np.abs(_rand((5, 40, 50), 3)) + 0.1
    y = np.asarray(d(x))
    ratio = y / x
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-6)  # shared
    np.testing.assert_allclose(np.unique(np.asarray(d.mask.get_value())), [0.0, 1 / (1 - p)], rtol=1e-6)
    np.testing.assert_allclose(ratio[0], d.mask.get_value(), rtol=1e-6)
    dropped = float((ratio[0] == 0).mean())
    sigma = math.sqrt(p * (1 - p) / ratio[0].size)
    assert abs(dropped - p) < 4 * sigma
    np.testing.assert_array_equal(d(x), y)               # kept between calls
    functional.reset_net(d)
    assert d.mask.get_value().shape == () and int(d.drawn.get_value()) == 0
    y2 = np.asarray(d(x))
    assert not np.array_equal(y2, y)                     # a new mask
    np.testing.assert_allclose((y2 / x)[1:], np.broadcast_to((y2 / x)[0], (4, 40, 50)), rtol=1e-6)


def test_dropout_single_step_reuses_the_mask_and_eval_is_identity():
    d = layer.Dropout(0.5, rngs=nnx.Rngs(1))
    x = np.ones((8, 16), np.float32)
    y0, y1 = d(x), d(2 * x)
    np.testing.assert_array_equal(np.asarray(y1), 2 * np.asarray(y0))
    mask = np.asarray(d.mask.get_value())
    d.eval()
    np.testing.assert_array_equal(d(x), x)
    np.testing.assert_array_equal(d.mask.get_value(), mask)   # kept in eval
    d.train()
    np.testing.assert_array_equal(d(x), y0)


def test_dropout_state_works_with_jit_split_merge_eval_shape_init_net_state_and_grad():
    model = nnx.Sequential(layer.Dropout(0.5, rngs=nnx.Rngs(2)), layer.Linear(6, 3, rngs=nnx.Rngs(3)))
    x = jnp.asarray(np.abs(_rand((4, 6), 4)) + 0.5)
    f = nnx.jit(lambda m, x: m(x))
    y1 = f(model, x)
    np.testing.assert_array_equal(f(model, x), y1)      # the mask came out of jit
    np.testing.assert_array_equal(model(x), y1)         # and is the eager module's mask
    graphdef, state = nnx.split(model)
    np.testing.assert_array_equal(nnx.merge(graphdef, state)(x), y1)
    abstract = nnx.eval_shape(lambda: nnx.Sequential(layer.Dropout(0.5, rngs=nnx.Rngs(0))))
    assert nnx.state(abstract)["layers"][0]["mask"].get_value().shape == ()
    functional.reset_net(model)
    functional.init_net_state(model, x)                 # mask of the batch shape, not yet drawn
    assert model.layers[0].mask.get_value().shape == (4, 6)
    y3 = np.asarray(model.layers[0](x))
    assert (y3 == 0).any()                              # drawn at the first call, not all ones
    # grad: d(sum(x * M))/dx = M
    d = model.layers[0]
    m = np.asarray(d.mask.get_value())
    g = jax.grad(lambda x: d.step(d.state, x, jax.random.PRNGKey(9))[1].sum())(x)   # drawn: key unused
    np.testing.assert_allclose(g, m)


def test_dropout_orbax_round_trip_continues_with_the_same_mask(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    model = nnx.Sequential(layer.Dropout(0.4, step_mode="m", rngs=nnx.Rngs(5)))
    x = jnp.ones((2, 3, 7))
    y = model(x)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "pure", nnx.to_pure_dict(nnx.state(model)))
    ckpt.wait_until_finished()
    graphdef, abstract = nnx.split(nnx.eval_shape(
        lambda: nnx.Sequential(layer.Dropout(0.4, step_mode="m", rngs=nnx.Rngs(0)))))
    nnx.replace_by_pure_dict(abstract, ckpt.restore(tmp_path / "pure"))
    restored = nnx.merge(graphdef, abstract)
    np.testing.assert_array_equal(restored(x), y)
    np.testing.assert_array_equal(model(x), y)
    functional.reset_net(restored), functional.reset_net(model)
    np.testing.assert_array_equal(restored(x), model(x))   # the same next mask (RNG state too)


def test_dropout_pure_api_and_bad_input():
    d = layer.Dropout(0.25)
    x = jnp.ones((3, 4, 5))
    state, y = d.multi_step(d.init_state(x[0]), x, jax.random.PRNGKey(0))
    expect = np.asarray(layer.dropout_mask(jax.random.PRNGKey(0), (4, 5), 0.25))
    np.testing.assert_array_equal(y, np.broadcast_to(expect, (3, 4, 5)))
    np.testing.assert_array_equal(state["mask"], expect)
    y_v = jax.vmap(lambda k: d.step(d.init_state(x[0]), x[0], k)[1])(jax.random.split(jax.random.PRNGKey(1), 3))
    assert y_v.shape == (3, 4, 5) and not np.array_equal(y_v[0], y_v[1])
    assert d.mask.get_value().shape == ()               # the pure API left the module alone
    with pytest.raises(ValueError, match="PRNG key"):
        d(x[0])
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match="p must be in"):
            layer.Dropout(p)
    with pytest.raises(TypeError, match="rngs"):
        layer.Dropout(0.5, rngs=0)
    d = layer.Dropout(0.5, rngs=nnx.Rngs(0))
    d(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="reset_net"):
        d(jnp.ones((4, 3)))
    half = layer.Dropout(0.5, rngs=nnx.Rngs(0))(jnp.ones((64,), jnp.bfloat16))
    assert half.dtype == jnp.bfloat16 and set(np.unique(np.asarray(half, np.float32))) <= {0.0, 2.0}


# --- step-mode layers ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    dict(k=3, s=1, p=1, d=1, g=1, cin=3, cout=4),
    dict(k=3, s=2, p=2, d=2, g=2, cin=4, cout=6),
])
def test_conv2d_matches_numpy_in_both_step_modes(cfg):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    conv = layer.Conv2d(cfg["cin"], cfg["cout"], cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["g"],
                        rngs=nnx.Rngs(0))
    x = _rand((2, 3, 9, 7, cfg["cin"]), 5)
    w, b = np.asarray(conv.kernel.get_value()), np.asarray(conv.bias.get_value())
    ref = np_conv2d(x.reshape(6, 9, 7, -1), w, b, pair(cfg["s"]), pair(cfg["p"]), pair(cfg["d"]), cfg["g"])
    np.testing.assert_allclose(conv(x[0]), ref[:3], rtol=1e-4, atol=1e-5)
    conv.step_mode = "m"
    np.testing.assert_allclose(conv(x), ref.reshape((2, 3) + ref.shape[1:]), rtol=1e-4, atol=1e-5)


def test_conv2d_reflect_padding_and_same():
    # (all padding modes against PyTorch: test_layers_match_reference_outputs)
    conv = layer.Conv2d(3, 4, 3, padding=1, padding_mode="reflect", rngs=nnx.Rngs(1))
    x = _rand((2, 5, 6, 3), 6)
    w, b = np.asarray(conv.kernel.get_value()), np.asarray(conv.bias.get_value())
    ref = np_conv2d(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect"), w, b, (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(conv(x), ref, rtol=1e-4, atol=1e-5)
    same = layer.Conv2d(3, 4, 3, padding="same", padding_mode="circular", rngs=nnx.Rngs(1))
    same.kernel.set_value(conv.kernel.get_value())
    same.bias.set_value(conv.bias.get_value())
    ref = np_conv2d(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="wrap"), w, b, (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(same(x), ref, rtol=1e-4, atol=1e-5)


def test_linear_and_conv_use_pytorchs_default_initialisation():
    lin = layer.Linear(400, 300, rngs=nnx.Rngs(0))
    conv = layer.Conv2d(4, 6, 3, 2, 2, 2, 2, rngs=nnx.Rngs(0))   # the shapes of the tests above
    for params, fan_in in [(lin, 400), (conv, 2 * 9)]:
        bound = 1 / math.sqrt(fan_in)
        k = np.asarray(params.kernel.get_value())
        assert np.abs(k).max() <= bound and np.abs(np.asarray(params.bias.get_value())).max() <= bound
        assert k.max() > 0.8 * bound and k.min() < -0.8 * bound
    # U(-a, a) has standard deviation a / sqrt(3) (120000 samples: within 1%)
    k = np.asarray(lin.kernel.get_value())
    assert abs(k.std() - 1 / math.sqrt(1200)) < 0.01 / math.sqrt(1200)
    assert layer.Linear(4, 2, bias=False, rngs=nnx.Rngs(0)).bias is None
    x = _rand((3, 2, 4), 7)
    lin = layer.Linear(4, 2, step_mode="m", rngs=nnx.Rngs(0))
    np.testing.assert_allclose(lin(x), x @ np.asarray(lin.kernel.get_value()) + np.asarray(lin.bias.get_value()),
                               rtol=1e-5, atol=1e-6)


def test_batchnorm2d_matches_pytorch_conventions():
    bn = layer.BatchNorm2d(3, momentum=0.2, step_mode="m")
    bn.weight.set_value(jnp.array([1.0, 2.0, 0.5]))
    bn.bias.set_value(jnp.array([0.0, -1.0, 0.3]))
    rm, rv = np.zeros(3), np.ones(3)
    for seed in range(2):
        x = _rand((2, 4, 3, 5, 3), 10 + seed) * 3 - 1
        flat = x.reshape(-1, 3).astype(np.float64)
        mu, var, n = flat.mean(0), flat.var(0), flat.shape[0]
        y = bn(x)
        np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5) * [1, 2, 0.5] + [0, -1, 0.3],
                                   rtol=1e-4, atol=1e-5)
        rm, rv = 0.8 * rm + 0.2 * mu, 0.8 * rv + 0.2 * var * n / (n - 1)
    np.testing.assert_allclose(bn.running_mean.get_value(), rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.get_value(), rv, rtol=1e-5)
    assert int(bn.num_batches_tracked.get_value()) == 2
    bn.eval()
    x = _rand((1, 2, 3, 3, 3), 12)
    np.testing.assert_allclose(bn(x), (x - rm) / np.sqrt(rv + 1e-5) * [1, 2, 0.5] + [0, -1, 0.3],
                               rtol=1e-4, atol=1e-5)
    # momentum=None: cumulative average of the batch statistics
    cum = layer.BatchNorm2d(2, momentum=None)
    xs = [_rand((4, 2, 2, 2), 20 + i) for i in range(3)]
    for xi in xs:
        cum(xi)
    np.testing.assert_allclose(cum.running_mean.get_value(),
                               np.mean([xi.reshape(-1, 2).mean(0) for xi in xs], 0), rtol=1e-5, atol=1e-6)
    # without running statistics: batch statistics in eval too
    free = layer.BatchNorm2d(2, affine=False, track_running_stats=False, use_running_average=True)
    y = free(xs[0])
    f = xs[0].reshape(-1, 2)
    np.testing.assert_allclose(y, (xs[0] - f.mean(0)) / np.sqrt(f.var(0) + 1e-5), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        bn(jnp.ones((1, 2, 3, 3, 4)))
    with pytest.raises(ValueError, match=r"\[T, B, H, W, C\]"):
        bn(jnp.ones((2, 3, 3, 3)))


@pytest.mark.parametrize("k,s,p,d,ceil", [(2, None, 0, 1, False), (3, 2, 1, 1, True),
                                          ((3, 2), (2, 1), (1, 0), (2, 1), True), (2, 3, 1, 1, True)])
def test_max_pool_matches_pytorch_semantics(k, s, p, d, ceil):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    x = _rand((2, 3, 7, 8, 2), 13)
    pool = layer.MaxPool2d(k, s, p, d, ceil_mode=ceil, step_mode="m")
    ref = np_max_pool(x.reshape(6, 7, 8, 2), pair(k), pair(k if s is None else s), pair(p), pair(d), ceil)
    np.testing.assert_array_equal(pool(x), ref.reshape((2, 3) + ref.shape[1:]).astype(np.float32))


@pytest.mark.parametrize("k,p,ceil", [(2, 0, False), (2, 1, True), ((3, 2), (1, 1), False),
                                      (3, 1, True)])
def test_tiled_max_pool_equals_reduce_window_values_and_gradients(k, p, ceil):
    """Non-overlapping windows (stride = kernel) take the int8-argmax backward: same values and
    the same gradient as ``reduce_window``'s on a tie-heavy binary spike map, odd sizes."""
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    x = (_rand((3, 9, 7, 4), 21) > 0.3).astype(np.float32)
    x[0, :3] = _rand((3, 7, 4), 22)        # a few real-valued rows too
    pool = layer.MaxPool2d(k, padding=p, ceil_mode=ceil)
    pads, _ = layer._pool_padding("MaxPool2d", (9, 7), pair(k), pair(k), pair(p), (1, 1), ceil)
    ref = lambda a: pool._window(a, -np.inf, jax.lax.max, pads)
    y, vjp = jax.vjp(pool, jnp.asarray(x))
    y_ref, vjp_ref = jax.vjp(ref, jnp.asarray(x))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(y, np_max_pool(x, pair(k), pair(k), pair(p), (1, 1), ceil))
    g = jnp.asarray(_rand(y.shape, 23))
    np.testing.assert_array_equal(vjp(g)[0], vjp_ref(g)[0])
    assert "reduce_window" not in str(jax.make_jaxpr(jax.grad(lambda a: pool(a).sum()))(x))


@pytest.mark.parametrize("k,s,p,ceil,cip,div", [(2, None, 0, False, True, None), (3, 2, 1, True, True, None),
                                                (3, 2, 1, True, False, None), ((3, 2), (2, 3), (1, 1), True, True, None),
                                                (2, 1, 1, False, True, 3)])
def test_avg_pool_matches_pytorch_semantics(k, s, p, ceil, cip, div):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    x = _rand((2, 7, 8, 3), 14)
    pool = layer.AvgPool2d(k, s, p, ceil, cip, div)
    ref = np_avg_pool(x, pair(k), pair(k if s is None else s), pair(p), ceil, cip, div)
    np.testing.assert_allclose(pool(x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("out", [1, 3, (2, 5), (None, 4)])
def test_adaptive_avg_pool_matches_pytorch_windows(out):
    x = _rand((2, 2, 7, 5, 3), 15)
    pool = layer.AdaptiveAvgPool2d(out, step_mode="m")
    oh, ow = (out, out) if isinstance(out, int) else (out[0] or 7, out[1] or 5)
    ref = np_adaptive_avg(x.reshape(4, 7, 5, 3), oh, ow)
    np.testing.assert_allclose(pool(x), ref.reshape((2, 2) + ref.shape[1:]), rtol=1e-5, atol=1e-6)


def test_flatten_step_modes_and_channels_last_order():
    x = np.arange(2 * 3 * 2 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 2, 4)
    np.testing.assert_array_equal(layer.Flatten(step_mode="m")(x), x.reshape(2, 3, 16))
    np.testing.assert_array_equal(layer.Flatten()(x[0]), x[0].reshape(3, 16))
    np.testing.assert_array_equal(layer.Flatten(1, 2)(x[0]), x[0].reshape(3, 4, 4))
    with pytest.raises(ValueError, match="do not fit"):
        layer.Flatten(3, 1)(x[0])


def test_pool_dtypes_and_bad_arguments():
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        x = jnp.asarray(_rand((2, 6, 6, 2), 16), dtype)
        for pool in (layer.MaxPool2d(2), layer.AvgPool2d(2), layer.AdaptiveAvgPool2d(3)):
            y = pool(x)
            assert y.dtype == dtype and y.shape == (2, 3, 3, 2)
            np.testing.assert_allclose(np.asarray(y, np.float32),
                                       np.asarray(pool(x.astype(jnp.float32))), rtol=1e-2, atol=1e-2)
        bn = layer.BatchNorm2d(2)
        y = bn(x)
        assert y.dtype == dtype
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(layer.BatchNorm2d(2)(x.astype(jnp.float32))),
                                   rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match="half"):
        layer.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="return_indices"):
        layer.MaxPool2d(2, return_indices=True)
    with pytest.raises(ValueError, match="step_mode"):
        layer.AvgPool2d(2, step_mode="x")
    with pytest.raises(ValueError, match="divisible by groups"):
        layer.Conv2d(3, 4, 3, groups=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="padding_mode"):
        layer.Conv2d(3, 4, 3, padding_mode="mirror", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="kernel_size"):
        layer.Conv2d(3, 4, 2.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\[T, B, H, W, C\]"):
        layer.Conv2d(3, 4, 3, step_mode="m", rngs=nnx.Rngs(0))(jnp.ones((2, 5, 5, 3)))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        layer.MaxPool2d(2)(jnp.ones((2, 1, 5, 5, 3)))


class _CNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = layer.Conv2d(2, 4, 3, padding=1, step_mode="m", rngs=rngs)
        self.bn = layer.BatchNorm2d(4, step_mode="m")
        self.sn1 = neuron.IFNode(step_mode="m")
        self.pool = layer.MaxPool2d(2, step_mode="m")
        self.drop = layer.Dropout(0.2, step_mode="m", rngs=rngs)
        self.flat = layer.Flatten(step_mode="m")
        self.fc = layer.Linear(4 * 3 * 3, 3, step_mode="m", rngs=rngs)
        self.sn2 = neuron.LIFNode(step_mode="m")

    def __call__(self, x):
        x = self.pool(self.sn1(self.bn(self.conv(x))))
        return self.sn2(self.fc(self.flat(self.drop(x))))


def test_small_cnn_jit_grad_vmap_and_set_step_mode():
    model = _CNN(nnx.Rngs(0))
    x = jnp.asarray(np.abs(_rand((4, 2, 6, 6, 2), 17)) * 8)

    def loss(model, x):
        out = model(x)
        return functional.firing_rate_mse_loss(out, jnp.array([0, 2]))

    grads = nnx.jit(nnx.grad(loss))(model, x)
    assert np.isfinite(np.asarray(grads.conv.kernel.get_value())).all()
    assert float(jnp.abs(grads.conv.kernel.get_value()).sum()) > 0
    functional.reset_net(model)
    model.eval()
    model.fc.kernel.set_value(jnp.full((36, 3), 0.3))     # so that the output layer fires
    y_jit = nnx.jit(lambda m, x: m(x))(model, x)
    assert float(y_jit.sum()) > 0
    # vmap over independent inputs (eval: nothing is mutated)
    graphdef, state = nnx.split(model)

    def run(state, x):
        m = nnx.merge(graphdef, state)
        functional.reset_net(m)
        return m(x)
    ys = jax.jit(jax.vmap(run, in_axes=(None, 0)))(state, jnp.stack([x, 0.5 * x]))
    np.testing.assert_array_equal(ys[0], y_jit)
    functional.set_step_mode(model, "s")
    assert model.conv.step_mode == "s" and model.drop.step_mode == "s" and model.flat.step_mode == "s"


# --- against PyTorch / SpikingJelly 2.0.0 (tests/golden_extra/layers.npz) ------------------------

def test_layers_match_reference_outputs():
    import pathlib
    g = np.load(pathlib.Path(__file__).parent / "golden_extra" / "layers.npz")
    nhwc = lambda a: np.moveaxis(a, -3, -1)                 # [.., C, H, W] -> [.., H, W, C]
    x = nhwc(g["x"])
    for i, (k, s, p, d, ceil) in enumerate([(2, None, 0, 1, False), (3, 2, 1, 1, True),
                                            ((3, 2), (2, 1), (1, 0), (2, 1), True), (2, 3, 1, 1, True)]):
        np.testing.assert_array_equal(layer.MaxPool2d(k, s, p, d, ceil_mode=ceil)(x), nhwc(g[f"max_{i}"]))
    for i, args in enumerate([(3, 2, 1, True, True, None), (3, 2, 1, True, False, None),
                              ((3, 2), (2, 3), (1, 1), True, True, None), (2, 1, 1, False, True, 3)]):
        np.testing.assert_allclose(layer.AvgPool2d(*args)(x), nhwc(g[f"avg_{i}"]), rtol=1e-5, atol=1e-6)
    for i, size in enumerate([1, 3, (2, 5), (None, 4)]):
        np.testing.assert_allclose(layer.AdaptiveAvgPool2d(size)(x), nhwc(g[f"adaptive_{i}"]),
                                   rtol=1e-5, atol=1e-6)
    bn = layer.BatchNorm2d(3, momentum=0.2, step_mode="m")
    bn.weight.set_value(jnp.array([1.0, 2.0, 0.5]))
    bn.bias.set_value(jnp.array([0.0, -1.0, 0.3]))
    for i in range(2):
        np.testing.assert_allclose(bn(nhwc(g[f"bn_x{i}"])), nhwc(g[f"bn_y{i}"]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.get_value(), g["bn_running_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.get_value(), g["bn_running_var"], rtol=1e-5)
    bn.eval()
    np.testing.assert_allclose(bn(nhwc(g["bn_x0"])), nhwc(g["bn_eval"]), rtol=1e-4, atol=1e-5)
    kernel = np.transpose(g["conv_w"], (2, 3, 1, 0))          # OIHW -> HWIO
    for mode, pad, stride, dil, ref in [("zeros", (1, 0), (2, 1), (1, 2), g["conv_y"]),
                                        ("reflect", 1, 1, 1, g["conv_reflect"]),
                                        ("replicate", 1, 1, 1, g["conv_replicate"]),
                                        ("circular", 1, 1, 1, g["conv_circular"])]:
        conv = layer.Conv2d(4, 6, (3, 2), stride, pad, dil, 2, padding_mode=mode, rngs=nnx.Rngs(0))
        conv.kernel.set_value(jnp.asarray(kernel))
        conv.bias.set_value(jnp.asarray(g["conv_b"]))
        np.testing.assert_allclose(conv(nhwc(g["conv_x"])), nhwc(ref), rtol=1e-4, atol=1e-5)
