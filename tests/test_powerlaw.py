"""powerlaw_psd_gaussian against the SpikingJelly 2.0.0 transform and statistics files."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax.neuron
from snnjax.noise import powerlaw_psd_gaussian, powerlaw_psd_gaussian_from_normals
from golden_utils import assert_close, case_names, load_case, precision

TRANSFORMS = case_names("powerlaw_psd_gaussian")
TRANSFORMS = [n for n in TRANSFORMS if "__transform_" in n]
STATS = [n for n in case_names("powerlaw_psd_gaussian") if "__stats_" in n]


def test_golden_files_present():
    assert len(TRANSFORMS) == 5 and len(STATS) == 3


def test_exported_from_neuron_namespace():
    assert snnjax.neuron.powerlaw_psd_gaussian is powerlaw_psd_gaussian


@pytest.mark.parametrize("name", TRANSFORMS)
def test_transform_golden(name):
    """Same standard-normal draws in, same series out (float64)."""
    case = load_case(name)
    kw = case.meta["kwargs"]
    with precision(case):
        f = jax.jit(powerlaw_psd_gaussian_from_normals, static_argnums=(3, 4))
        y = f(kw["exponent"], jnp.asarray(case["z_real"]), jnp.asarray(case["z_imag"]),
              kw["size"][-1], kw["fmin"])
        assert y.dtype == jnp.float64
        assert_close(y, case["y"], case, "value", "y")
        # parity recipe with the reference: its draws are two standard_normal calls of the same
        # NumPy generator, real part first
        rng = np.random.default_rng(kw["random_state"])
        shape = case["z_real"].shape
        y2 = powerlaw_psd_gaussian_from_normals(kw["exponent"], rng.standard_normal(shape),
                                                rng.standard_normal(shape), kw["size"][-1],
                                                kw["fmin"])
        assert_close(y2, case["y"], case, "value", "y (numpy generator)")


def test_reference_worked_examples():
    """Spec research-ilc-noisy.md, worked examples (random_state=0 and 1)."""
    with precision("float64"):
        rng = np.random.default_rng(0)
        y = powerlaw_psd_gaussian_from_normals(1.0, rng.standard_normal(5),
                                               rng.standard_normal(5), 8)
        np.testing.assert_allclose(y, [0.203954, -0.844221, -1.644015, 0.326423, 0.307871,
                                       0.275701, 0.840277, 1.050562], atol=1e-6)
        rng = np.random.default_rng(1)
        y = powerlaw_psd_gaussian_from_normals(2.0, rng.standard_normal((2, 3)),
                                               rng.standard_normal((2, 3)), 5, 0.25)
        np.testing.assert_allclose(y, [[0.987418, -0.379035, -0.221375, -0.228667, 0.705619],
                                       [0.304239, -0.955447, -0.716111, -1.427812, -0.462762]],
                                   atol=1e-6)


def _periodogram(y):
    return (np.abs(np.fft.rfft(y, axis=-1)) ** 2).mean(axis=0)[1:]


@pytest.mark.parametrize("name", STATS)
def test_statistics_golden(name):
    """Our JAX draws have the reference's distribution: PSD slope, periodogram, per-series std."""
    case = load_case(name)
    kw = case.meta["kwargs"]
    beta = kw["exponent"]
    y = np.asarray(powerlaw_psd_gaussian(beta, kw["size"], kw["fmin"], key=jax.random.key(7)),
                   np.float64)
    assert y.shape == tuple(kw["size"]) and np.all(np.isfinite(y))
    freq, psd_ref = case["psd_freq"], case["psd_mean"]
    np.testing.assert_allclose(np.fft.rfftfreq(y.shape[-1])[1:], freq)
    psd = _periodogram(y)
    band = (freq > 0.002) & (freq < 0.4)
    slope = np.polyfit(np.log(freq[band]), np.log(psd[band]), 1)[0]
    assert abs(slope + beta) < 0.03, slope
    assert abs(slope - case.meta["stats"]["psd_slope"]) < 0.03
    # averaged periodogram against the reference's over 8 logarithmic bands
    edges = np.geomspace(0.002, 0.4, 9)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (freq >= lo) & (freq < hi)
        ratio = psd[sel].mean() / psd_ref[sel].mean()
        assert 0.85 < ratio < 1.15, (lo, hi, ratio)
    # per-series std and the spread of per-series means (the DC power)
    assert abs(y.std(axis=1).mean() - case["series_std"].mean()) < 0.02
    spread, spread_ref = y.mean(axis=1).std(), case["series_mean"].std()
    assert 0.75 < spread / spread_ref < 1.33, (spread, spread_ref)


def test_same_key_same_noise_different_key_different_noise():
    a = powerlaw_psd_gaussian(1.0, (3, 64), key=jax.random.key(0))
    b = powerlaw_psd_gaussian(1.0, (3, 64), key=jax.random.key(0))
    c = powerlaw_psd_gaussian(1.0, (3, 64), key=jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(powerlaw_psd_gaussian(1.0, (3, 64), key=0), a)
    # rows are independent series
    assert not np.allclose(a[0], a[1])


def test_jit_vmap_and_traced_exponent():
    keys = jax.random.split(jax.random.key(3), 4)
    f = jax.jit(lambda e, k: powerlaw_psd_gaussian(e, 32, key=k))
    batched = jax.vmap(f, in_axes=(None, 0))(1.5, keys)
    for i in range(4):
        np.testing.assert_allclose(batched[i], powerlaw_psd_gaussian(1.5, 32, key=keys[i]),
                                   rtol=1e-5, atol=1e-6)
    # a population of exponents at once
    ys = jax.vmap(lambda e: powerlaw_psd_gaussian(e, 32, key=keys[0]))(jnp.array([0.0, 2.0]))
    np.testing.assert_allclose(ys[1], powerlaw_psd_gaussian(2.0, 32, key=keys[0]), rtol=1e-5,
                               atol=1e-6)


def test_dtype_and_shapes():
    y = powerlaw_psd_gaussian(0.0, 9, key=0)
    assert y.shape == (9,) and y.dtype == jnp.float32
    y = powerlaw_psd_gaussian(1.0, [2, 3, 10], key=0, dtype=jnp.bfloat16)
    assert y.shape == (2, 3, 10) and y.dtype == jnp.bfloat16
    with precision("float64"):
        assert powerlaw_psd_gaussian(1.0, 8, key=0).dtype == jnp.float64


def test_edge_cases_that_work():
    # odd length with fmin = 0.5 is fine for white noise (0 ** 0 = 1) ...
    assert np.all(np.isfinite(powerlaw_psd_gaussian(0.0, 9, 0.5, key=0)))
    # ... and even length with fmin = 0.5 flattens the whole spectrum
    assert np.all(np.isfinite(powerlaw_psd_gaussian(2.0, 8, 0.5, key=0)))
    assert np.all(np.isfinite(powerlaw_psd_gaussian(1.0, 2, key=0)))


def test_errors():
    with pytest.raises(ValueError, match="last axis of size"):
        powerlaw_psd_gaussian(1.0, 1, key=0)  # reference: IndexError
    with pytest.raises(ValueError, match="last axis of size"):
        powerlaw_psd_gaussian(1.0, (4, 1), key=0)
    with pytest.raises(ValueError, match="odd series length"):
        powerlaw_psd_gaussian(1.0, 9, fmin=0.5, key=0)  # reference: inf
    with pytest.raises(ValueError, match="fmin must be in"):
        powerlaw_psd_gaussian(1.0, 8, fmin=0.6, key=0)
    with pytest.raises(ValueError, match="fmin must be in"):
        powerlaw_psd_gaussian(1.0, 8, fmin=-0.1, key=0)
    with pytest.raises(ValueError, match="size must be"):
        powerlaw_psd_gaussian(1.0, "8", key=0)
    with pytest.raises(ValueError, match="size must be"):
        powerlaw_psd_gaussian(1.0, (), key=0)
    with pytest.raises(ValueError, match="size must be"):
        powerlaw_psd_gaussian(1.0, (2.5, 8), key=0)
    with pytest.raises(TypeError, match="key is required"):
        powerlaw_psd_gaussian(1.0, 8)
    with pytest.raises(ValueError, match="z_real and z_imag"):
        powerlaw_psd_gaussian_from_normals(1.0, np.zeros(4), np.zeros(5), 8)
    with pytest.raises(ValueError, match="dtype must be a floating"):
        powerlaw_psd_gaussian(1.0, 8, key=0, dtype=jnp.int32)
