"""Losses and spike helpers of snnjax.functional against SpikingJelly 2.0.0 reference numbers
(tests/golden_extra/losses.npz, tools/gen_golden_extra.py) and independent NumPy versions."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import functional as F

G = np.load(pathlib.Path(__file__).parent / "golden_extra" / "losses.npz")


def np_log_softmax(x, axis):
    x = x.astype(np.float64)
    m = x.max(axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis, keepdims=True))


def np_tet(x_seq, target, ignore=-100):
    logp = np_log_softmax(x_seq, 2)
    total, count = 0.0, 0
    for t in range(x_seq.shape[0]):
        for idx in np.ndindex(target.shape):
            if target[idx] == ignore:
                continue
            n, rest = idx[0], idx[1:]
            total -= logp[(t, n, target[idx]) + rest]
            count += 1
    return total / count


def test_first_spike_index_matches_reference_and_numpy():
    out = F.first_spike_index(G["fsi_in"])
    assert out.dtype == jnp.bool_
    np.testing.assert_array_equal(out, G["fsi_out"])
    s = G["fsi_in"]
    ref = np.zeros(s.shape, bool)
    for idx in np.ndindex(s.shape[:-1]):
        hits = np.flatnonzero(s[idx])
        if hits.size:
            ref[idx + (hits[0],)] = True
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(jax.jit(F.first_spike_index)(s), ref)
    np.testing.assert_array_equal(jax.vmap(F.first_spike_index)(s), ref)
    with pytest.raises(ValueError, match="last axis"):
        F.first_spike_index(1.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_tet_matches_reference_numpy_and_its_gradient(dtype):
    for name in ("tet3", "tet4"):
        x, y = G[f"{name}_x"], G[f"{name}_y"]
        got = F.temporal_efficient_training_cross_entropy(jnp.asarray(x, dtype), y)
        tol = 1e-5 if dtype == jnp.float32 else 2e-2
        np.testing.assert_allclose(got, G[name], rtol=tol)
        np.testing.assert_allclose(got, np_tet(np.asarray(jnp.asarray(x, dtype), np.float64), y), rtol=tol)
    g = jax.jit(jax.grad(F.temporal_efficient_training_cross_entropy))(G["tet3_x"], G["tet3_y"])
    np.testing.assert_allclose(g, G["tet3_grad"], rtol=1e-5, atol=1e-7)
    # softmax - one_hot, averaged over T * N
    x = G["tet3_x"]
    p = np.exp(np_log_softmax(x, 2))
    ref = (p - np.eye(3)[G["tet3_y"]][None]) / (x.shape[0] * x.shape[1])
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-7)


def test_tet_ignore_index_vmap_and_bad_input():
    x, y = G["tet4_x"], G["tet4_y"].copy()
    y[0, 1] = -100
    np.testing.assert_allclose(F.temporal_efficient_training_cross_entropy(x, y), np_tet(x, y), rtol=1e-5)
    batch = jax.vmap(F.temporal_efficient_training_cross_entropy)(np.stack([x, 2 * x]), np.stack([y, y]))
    np.testing.assert_allclose(batch, [np_tet(x, y), np_tet(2 * x, y)], rtol=1e-5)
    with pytest.raises(ValueError, match="target must have shape"):
        F.temporal_efficient_training_cross_entropy(x, y[:, :3])
    with pytest.raises(TypeError, match="integer"):
        F.temporal_efficient_training_cross_entropy(x, y.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[T, N, C"):
        F.temporal_efficient_training_cross_entropy(x[0, 0], y[0])


def test_firing_rate_mse_loss_matches_numpy_and_has_gradients():
    s = (np.random.default_rng(0).random((7, 5, 3)) < 0.4).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0])
    rate = s.mean(0)
    np.testing.assert_allclose(F.firing_rate_mse_loss(s, y), np.mean((rate - np.eye(3)[y]) ** 2), rtol=1e-6)
    target = np.random.default_rng(1).random((5, 3)).astype(np.float32)
    np.testing.assert_allclose(F.firing_rate_mse_loss(s, target), np.mean((rate - target) ** 2), rtol=1e-6)
    g = jax.jit(jax.grad(F.firing_rate_mse_loss))(s, y)
    np.testing.assert_allclose(g, np.broadcast_to(2 * (rate - np.eye(3)[y]) / (15 * 7), s.shape), rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(F.firing_rate_mse_loss)(s[None], y[None]), [F.firing_rate_mse_loss(s, y)])
    with pytest.raises(ValueError, match="num_classes"):
        F.firing_rate_mse_loss(s, y, num_classes=4)
    with pytest.raises(ValueError, match="shape"):
        F.firing_rate_mse_loss(s, target[:2])


def test_kernel_dot_product_matches_reference_and_numpy():
    s = G["spikes"].reshape(6, -1).astype(np.float64)
    xy = s @ s.T
    d2 = ((s[:, None] - s[None]) ** 2).sum(-1)
    refs = {"linear": ((), xy), "polynomial": ((2,), xy ** 2),
            "sigmoid": ((0.5,), 1 / (1 + np.exp(-0.5 * xy))), "gaussian": ((1.5,), np.exp(-d2 / 4.5))}
    for kernel, (args, ref) in refs.items():
        got = F.kernel_dot_product(s.astype(np.float32), s.astype(np.float32), kernel, *args)
        np.testing.assert_allclose(got, G[f"kernel_{kernel}"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    other = F.kernel_dot_product(s[:2], s, "gaussian", 1.5)      # M != N works here
    np.testing.assert_allclose(other, np.exp(-d2[:2] / 4.5), rtol=1e-5)
    with pytest.raises(ValueError, match="sigma must be positive"):
        F.kernel_dot_product(s, s, "gaussian", 0.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        F.kernel_dot_product(s, s, "rbf")


def test_spike_similar_loss_matches_reference_numpy_and_has_gradients():
    s, labels = G["spikes"], G["labels"]
    flat = s.reshape(6, -1).astype(np.float64)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    p = flat @ flat.T / (norm * norm.T + 1e-8)
    q = np.minimum(labels @ labels.T, 1)
    for loss, ref in [("mse", np.mean((p - q) ** 2)), ("l1", np.mean(np.abs(p - q)))]:
        np.testing.assert_allclose(F.spike_similar_loss(s, labels, "linear", loss), G[f"loss_linear_{loss}"], rtol=1e-5)
        np.testing.assert_allclose(F.spike_similar_loss(s, labels, "linear", loss), ref, rtol=1e-5)
    pc = np.clip(p, 0, 1)
    with np.errstate(divide="ignore"):
        bce = -np.mean(q * np.maximum(np.log(pc), -100) + (1 - q) * np.maximum(np.log(1 - pc), -100))
    np.testing.assert_allclose(F.spike_similar_loss(s, labels, "linear", "bce"), bce, rtol=1e-4)
    np.testing.assert_allclose(F.spike_similar_loss(s, labels, "gaussian", "mse", 1.5),
                               G["loss_gaussian_mse"], rtol=1e-5)
    rates = np.random.default_rng(2).random((6, 3, 4)).astype(np.float32)
    g = jax.jit(jax.grad(lambda r: F.spike_similar_loss(r, labels)))(rates)
    eps = 1e-3
    e = np.zeros_like(rates)
    e[1, 2, 3] = eps
    fd = (F.spike_similar_loss(rates + e, labels) - F.spike_similar_loss(rates - e, labels)) / (2 * eps)
    np.testing.assert_allclose(g[1, 2, 3], fd, rtol=2e-2, atol=1e-5)
    with pytest.raises(ValueError, match="loss_type"):
        F.spike_similar_loss(s, labels, "linear", "hinge")
