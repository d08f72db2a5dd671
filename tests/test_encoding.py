"""snnjax.encoding against SpikingJelly 2.0.0 outputs (tests/golden_extra/encoders.npz),
independent NumPy versions and, for the Poisson encoder, statistical tests."""
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import encoding, functional

G = np.load(pathlib.Path(__file__).parent / "golden_extra" / "encoders.npz")


def np_latency(x, T, fn):
    x = x.astype(np.float32)
    if fn == "log":
        alpha = np.float32(math.exp(T - 1.0) - 1.0)
        tf = np.float32(T - 1.0) - np.log(alpha * x + np.float32(1.0))
    else:
        tf = np.float32(T - 1.0) * (np.float32(1.0) - x)
    tf = np.rint(tf).astype(int)
    return (np.arange(T).reshape((T,) + (1,) * x.ndim) == tf[None]).astype(np.float32)


def np_phase(x, K):
    r, w, out = x.astype(np.float32).copy(), np.float32(0.5), []
    for _ in range(K):
        s = (r >= w).astype(np.float32)
        r = r - w * s
        out.append(s)
        w = w * np.float32(0.5)
    return np.stack(out)


@pytest.mark.parametrize("T", [1, 9])
@pytest.mark.parametrize("fn", ["linear", "log"])
def test_latency_encoder_matches_reference_calls_and_numpy(T, fn):
    x = G["x"]
    enc = encoding.LatencyEncoder(T, fn)
    calls = np.stack([enc(x) for _ in range(T + 2)])          # wraps around after T calls
    np.testing.assert_array_equal(calls, G[f"latency_{fn}_{T}"])
    full = enc.encode(x)
    np.testing.assert_array_equal(full, np_latency(x, T, fn))
    np.testing.assert_array_equal(full.sum(0), np.ones_like(x))   # exactly one spike each
    functional.reset_net(enc)
    enc.step_mode = "m"
    np.testing.assert_array_equal(enc(np.broadcast_to(x, (T + 2,) + x.shape)), G[f"latency_{fn}_{T}"])


def test_weighted_phase_and_periodic_encoders_match_reference():
    K = 5
    enc = encoding.WeightedPhaseEncoder(K)
    xw = G["phase_x"]
    np.testing.assert_array_equal(np.stack([enc(xw) for _ in range(K + 2)]), G["phase"])
    full = enc.encode(xw)
    np.testing.assert_array_equal(full, np_phase(xw, K))
    weights = 0.5 ** np.arange(1, K + 1)
    recon = np.tensordot(weights, np.asarray(full), 1)
    assert np.all(xw - recon >= 0) and np.all(xw - recon < 2.0 ** -K)
    pat = G["periodic_in"]
    per = encoding.PeriodicEncoder(pat)
    assert per.T == 4
    np.testing.assert_array_equal(np.stack([per(pat) for _ in range(7)]), G["periodic"])
    np.testing.assert_array_equal(G["periodic"], pat[np.arange(7) % 4])


def test_stateful_encoders_under_jit_split_merge_vmap_and_dtypes():
    x = jnp.asarray(G["x"])
    enc = encoding.LatencyEncoder(6, "log")
    f = nnx.jit(lambda m, x: m(x))
    outs = np.stack([f(enc, x) for _ in range(8)])
    np.testing.assert_array_equal(outs, G["latency_log_6"])   # 8 = T + 2 calls, wrapped
    assert int(enc.t.get_value()) == 8 % 6
    graphdef, state = nnx.split(enc)
    np.testing.assert_array_equal(nnx.merge(graphdef, state)(x), G["latency_log_6"][2])
    functional.reset_net(enc)
    assert enc.spike.get_value().shape == () and int(enc.encoded.get_value()) == 0
    batch = jax.vmap(enc.encode)(jnp.stack([x, 1 - x]))
    np.testing.assert_array_equal(batch[1], np_latency(1 - G["x"], 6, "log"))
    for dtype in (jnp.bfloat16, jnp.float16):
        y = encoding.WeightedPhaseEncoder(3).encode(jnp.asarray([0.5, 0.25, 0.75], dtype))
        assert y.dtype == dtype
        np.testing.assert_array_equal(np.asarray(y, np.float32), [[1, 0, 1], [0, 1, 1], [0, 0, 0]])
    # pure API
    state, out = enc.step(enc.init_state(x), x)
    np.testing.assert_array_equal(out, np_latency(G["x"], 6, "log")[0])
    assert int(state["t"]) == 1


def test_poisson_encoder_statistics_keys_and_jit():
    p = np.array([0.0, 0.05, 0.3, 0.5, 0.9, 1.0], np.float32)
    n = 4000
    enc = encoding.PoissonEncoder(rngs=nnx.Rngs(0))
    s = np.asarray(enc.encode(p, n))
    assert s.shape == (n, 6) and set(np.unique(s)) <= {0.0, 1.0}
    rate = s.mean(0)
    sigma = np.sqrt(np.maximum(p * (1 - p), 1e-12) / n)
    assert np.all(np.abs(rate - p) <= 4 * sigma + 1e-6), (rate, p)
    assert rate[0] == 0.0 and rate[-1] == 1.0
    # independence over time: lag-1 correlation of the p=0.5 train ~ N(0, 1/n)
    a = s[:, 3] - s[:, 3].mean()
    assert abs((a[1:] * a[:-1]).mean() / a.var()) < 4 / math.sqrt(n)
    # a fresh draw per call; an explicit key is reproducible
    assert not np.array_equal(enc(np.full(64, 0.5)), enc(np.full(64, 0.5)))
    k = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(enc(p, key=k), encoding.PoissonEncoder()(p, key=k))
    u = np.asarray(jax.random.uniform(k, (6,), jnp.float32))
    np.testing.assert_array_equal(enc(p, key=k), (u <= p).astype(np.float32))
    # traced input is not checked: values saturate
    y = jax.jit(lambda x, k: encoding.PoissonEncoder()(x, key=k))(jnp.array([-0.5, 1.5]), k)
    np.testing.assert_array_equal(y, [0.0, 1.0])
    y = nnx.jit(lambda m, x: m(x))(enc, jnp.full((3,), 0.5, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    keys = jax.random.split(k, 3)
    v = jax.vmap(lambda k: encoding.PoissonEncoder()(jnp.full(32, 0.5), key=k))(keys)
    assert v.shape == (3, 32) and not np.array_equal(v[0], v[1])


def test_bad_input():
    for bad in ([-0.1, 0.5], [0.2, 1.01], [np.nan]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            encoding.PoissonEncoder(rngs=nnx.Rngs(0))(np.array(bad, np.float32))
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            encoding.LatencyEncoder(4).encode(np.array(bad, np.float32))
    with pytest.raises(ValueError, match="1 - 2\\^-3"):
        encoding.WeightedPhaseEncoder(3)(np.array([0.9]))
    with pytest.raises(ValueError, match="no PRNG key"):
        encoding.PoissonEncoder()(np.array([0.5]))
    for T in (0, -2):
        with pytest.raises(ValueError, match="T must be a positive int"):
            encoding.LatencyEncoder(T)
        with pytest.raises(ValueError, match="K must be a positive int"):
            encoding.WeightedPhaseEncoder(T)
        with pytest.raises(ValueError, match="T must be a positive int"):
            encoding.PoissonEncoder(rngs=nnx.Rngs(0)).encode(np.array([0.5]), T)
    with pytest.raises(TypeError, match="T must be a positive int"):
        encoding.LatencyEncoder(2.0)
    with pytest.raises(ValueError, match="enc_function"):
        encoding.LatencyEncoder(4, "exp")
    with pytest.raises(ValueError, match="T >= 1"):
        encoding.PeriodicEncoder(np.zeros((0, 3)))
    # traced latency input is clipped to [0, 1]
    y = jax.jit(encoding.LatencyEncoder(4).encode)(jnp.array([-1.0, 2.0]))
    np.testing.assert_array_equal(y, np_latency(np.array([0.0, 1.0]), 4, "linear"))
