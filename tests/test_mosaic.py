"""The Mosaic GPU kernel backend (``backend='mosaic'``) against the ``lax.scan`` twin.

Without a GPU the kernels run in Mosaic GPU's interpret mode (``InterpretGPUParams``), forward
and backward; the set of primitives Mosaic lowers applies there too, so the rewrites
(``snnjax.kernels.rewrites``) and the Triton fallback take the same path as on the GPU.
Interpret mode is slow: a sample of the neuron registry runs here; the H200 runs every neuron
(``SNNJAX_KERNEL_BACKEND=mosaic pytest tests/test_kernel_all_neurons.py tests/test_golden.py``).
"""
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import kernels, neuron, surrogate
from snnjax.kernels import Config, pallas_mosaic
from snnjax.kernels import rewrites as rw

import test_kernel_all_neurons as kan

pytestmark = pytest.mark.skipif(
    not pallas_mosaic.available(),
    reason="this JAX has no Mosaic GPU Pallas API with interpret parameters")

ON_GPU = kernels.on_gpu()
LIF_STEP = neuron.LIFNode().bound_step()     # lif_step with the default statics bound
IF_STEP = neuron.IFNode().bound_step()


# --- rewrites: accuracy against jnp ------------------------------------------------------------

def _samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    mags = np.concatenate([
        10.0 ** rng.uniform(-38, 38, 3000),      # tiny to large
        rng.uniform(0, 12, 3000),                 # the interesting range
        [0.0, 1e-45, 1e-38, 2 ** -24, 0.29, 0.41, 0.5, 1.0, 1.5, 2.0, 2.414, 3.0, 10.0, 10.5,
         2.0 ** 23, 2.0 ** 23 + 1, 8388607.5, 3e38, np.inf]])
    return np.concatenate([mags, -mags, [np.nan]]).astype(np.float32)


def _agree(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Elementwise: equal (NaN with NaN), within 2 ulp, within 1e-6 relative, or both below the
    smallest normal (XLA's CPU flushes subnormal results to zero)."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    with np.errstate(invalid="ignore", divide="ignore"):
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        close = (np.abs(g - w) <= 2 * ulp) | (np.abs(g - w) <= 1e-6 * np.abs(w))
    tiny = (np.abs(g) < 1.2e-38) & (np.abs(w) < 1.2e-38)
    return same | close | tiny


REWRITES = [("floor", jnp.floor), ("ceil", jnp.ceil), ("atan", jnp.arctan),
            ("expm1", jnp.expm1), ("log1p", jnp.log1p), ("erf", jax.scipy.special.erf),
            ("sqrt", jnp.sqrt)]


@pytest.mark.parametrize("name,ref", REWRITES, ids=[n for n, _ in REWRITES])
def test_rewrite_accuracy(name, ref):
    x = _samples()
    fn = getattr(rw, name)
    for f in (fn, jax.jit(fn)):      # eager and under XLA's simplifier
        got, want = np.asarray(f(x)), np.asarray(jax.jit(ref)(x))
        ok = _agree(got, want)
        assert ok.all(), (name, x[~ok][:5], got[~ok][:5], want[~ok][:5])
    # the sign of zero
    z = np.array([-0.0, 0.0], np.float32)
    np.testing.assert_array_equal(np.signbit(np.asarray(fn(z))), np.signbit(np.asarray(ref(z))))


def test_rewrite_erfc_accuracy():
    """erfc: within 2 ulp / 1e-6 of jnp's for |x| < 3; beyond, both lose relative accuracy to
    the polynomial (Cephes' float32 fit, which XLA uses as well): there, no further from the
    float64 value than 5e-6 relative, as jnp's own."""
    x = _samples()
    got, want = np.asarray(jax.jit(rw.erfc)(x)), np.asarray(jax.jit(jax.scipy.special.erfc)(x))
    inner = ~(np.abs(x) >= 3.0)
    ok = _agree(got, want)
    assert ok[inner].all(), (x[inner & ~ok][:5], got[inner & ~ok][:5])
    truth = np.array([math.erfc(float(v)) if np.isfinite(v) else (0.0 if v > 0 else 2.0)
                      for v in x[~inner]])
    rel = np.abs(got[~inner] - truth) / np.maximum(np.abs(truth), 1.2e-38)
    rel_jnp = np.abs(want[~inner] - truth) / np.maximum(np.abs(truth), 1.2e-38)
    assert np.max(rel[truth > 1.2e-38]) < 5e-6 and np.max(rel_jnp[truth > 1.2e-38]) < 5e-6
    assert np.isnan(rw.erfc(jnp.float32(np.nan)))


def test_rewrite_integer_pow_and_low_precision():
    x = jnp.array([-3.0, -0.5, 0.25, 2.0, 7.0], jnp.float32)
    for y in (-3, -2, -1, 0, 1, 2, 5):
        np.testing.assert_allclose(rw.integer_pow(x, y), x ** y, rtol=2e-7)
    xb = x.astype(jnp.bfloat16)
    assert rw.atan(xb).dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(rw.atan(xb), np.float32),
                               np.asarray(jnp.arctan(xb), np.float32), rtol=8e-3)


# --- kernels vs scan ----------------------------------------------------------------------------

def _kernel_calls(monkeypatch) -> list:
    """Count Mosaic kernel launches (to prove 'mosaic' did not silently become scan/Triton)."""
    calls = []
    real = pallas_mosaic.run_loop

    def counting(spec, *a, **kw):
        calls.append(spec.reverse)
        return real(spec, *a, **kw)
    monkeypatch.setattr(pallas_mosaic, "run_loop", counting)
    return calls


# A sample of the registry's elementwise classes (every one runs on the H200): one per family,
# with the low-precision dtypes alternating. Sizes: N = 37 (below one block: padded to 128) and
# N = 3 * 55 = 165 with blocks of 128 (two programs, the second overlapping the first).
SAMPLE = [("LIFNode", "float32", (9, 37), None),
          ("ParametricLIFNode", "float32", (7, 165), dict(block_n=128, chunk=3)),
          ("IzhikevichNode", "bfloat16", (5, 3, 55), dict(block_n=128, chunk=2)),
          ("CUBALIFNode", "float16", (5, 37), dict(chunk=2)),
          ("ILIFNode", "float32", (6, 165), dict(block_n=128, chunk=4, residuals="save")),
          ("KLIFNode", "float32", (5, 37), dict(chunk=2))]


@pytest.mark.parametrize("name,dtype,shape,config", SAMPLE, ids=[s[0] for s in SAMPLE])
def test_mosaic_matches_scan(name, dtype, shape, config, monkeypatch):
    calls = _kernel_calls(monkeypatch)
    kan.compare(name, jnp.dtype(dtype), shape, config, traced_params=(dtype == "float32"),
                backend="mosaic")
    assert True in calls and False in calls, "the Mosaic forward and backward kernels ran"


def test_registry_classes_lower_on_mosaic():
    """Every elementwise class passes the Mosaic check (its primitives lower, after rewrites)
    for the default surrogate: none needs the Triton fallback."""
    cfg = Config(backend="mosaic", interpret=True)
    for name in kan.ELEMENTWISE:
        m = kan.build(name, "scan")
        x = jnp.ones((3, 4), jnp.float32)
        kernels.check_step(m.bound_step(), m.init_state(x[0]), x, m.params(), cfg)


def test_vmap_jit_grad_params(monkeypatch):
    """vmap over a traced tau (the kernels' own grid gains an axis), jit, and grad w.r.t. tau
    (a shared parameter: per-program partial sums, overlapped lanes masked)."""
    calls = _kernel_calls(monkeypatch)
    T, N = 4, 165
    xs = 0.8 * jax.random.normal(jax.random.PRNGKey(1), (T, N)) + 0.6
    cfg = Config(backend="mosaic", interpret=not ON_GPU, block_n=128, chunk=2)

    def loss(engine, tau):
        fin, out = engine(LIF_STEP, {"v": jnp.zeros(N)}, xs,
                          {"tau": tau, "v_threshold": 1.0, "v_reset": 0.0})
        return jnp.sum(out * jnp.arange(N)) + jnp.sum(fin["v"] ** 2)

    mos = functools.partial(kernels.multi_step, backend="mosaic", config=cfg)
    ref = functools.partial(kernels.multi_step, backend="scan")
    taus = jnp.array([1.5, 2.0, 3.0])
    got = jax.jit(jax.vmap(jax.value_and_grad(functools.partial(loss, mos))))(taus)
    want = jax.vmap(jax.value_and_grad(functools.partial(loss, ref)))(taus)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert calls, "the Mosaic kernels ran"


def test_rewritten_surrogate_primitive():
    """ATan(spiking=False): its primitive is an arctan (no Mosaic rule): rewritten in the kernel,
    equal to scan within float32 rounding."""
    sg = surrogate.ATan(spiking=False)
    T, N = 5, 37
    xs = 0.8 * jax.random.normal(jax.random.PRNGKey(2), (T, N))

    def step(state, x, params):
        h = state["v"] * 0.5 + x
        return {"v": h - sg(h)}, sg(h)
    cfg = Config(backend="mosaic", interpret=not ON_GPU, chunk=2)
    got = kernels.multi_step(step, {"v": jnp.zeros(N)}, xs, (), backend="mosaic", config=cfg)
    want = kernels.multi_step(step, {"v": jnp.zeros(N)}, xs, (), backend="scan")
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)


def test_fallback_to_triton_warns_once():
    """A step Mosaic cannot lower (``pow`` with a traced exponent) warns once and runs the
    Triton kernels; the result is scan's."""
    T, N = 4, 37
    xs = jax.random.uniform(jax.random.PRNGKey(3), (T, N)) + 0.1

    def step(state, x, params):
        v = state["v"] * 0.5 + x ** params["k"]
        return {"v": v}, v

    p = {"k": jnp.float32(1.7)}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = kernels.multi_step(step, {"v": jnp.zeros(N)}, xs, p, backend="mosaic")
        kernels.multi_step(step, {"v": jnp.zeros(N)}, xs, p, backend="mosaic")
    msgs = [str(w.message) for w in rec if "falling back" in str(w.message)]
    assert len(msgs) == 1 and "pow" in msgs[0]
    want = kernels.multi_step(step, {"v": jnp.zeros(N)}, xs, p, backend="scan")
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_backend_argument():
    assert "mosaic" in kernels.BACKENDS
    m = neuron.LIFNode(backend="mosaic")
    assert m.backend == "mosaic"
    with pytest.raises(ValueError, match="backend"):
        neuron.LIFNode(backend="triton")
    for run in (kernels.pallas_multi_step, functools.partial(kernels.multi_step,
                                                             backend="mosaic")):
        with pytest.raises(ValueError, match="Config.backend"):
            run(IF_STEP, {"v": jnp.zeros(3)}, jnp.ones((2, 3)),
                {"v_threshold": 1.0, "v_reset": 0.0}, config=Config(backend="cuda", interpret=True))
    if not ON_GPU:
        assert kernels.auto_kernel_backend() == "triton"


def _cross_lower(fn, *args):
    try:
        jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    except Exception as e:   # a CPU jaxlib without the CUDA lowering pipeline
        if "platform" in str(e).lower() and "cuda" in str(e).lower():
            pytest.skip(f"no CUDA cross-lowering here: {e}")
        raise


def test_mosaic_cross_lowers_for_cuda():
    """The GPU path itself (Mosaic's pipeline up to NVVM, no GPU needed): interpret mode alone
    would not catch an op or layout the GPU lowering lacks. LIF forward and backward with a
    traced tau (its gradient has ``tau ** -2``: rewritten), and a forward through each rewrite
    but erf / erfc (they lower too, slowly; see below)."""
    T, N = 2, 300
    cfg = Config(backend="mosaic", interpret=False, block_n=128, chunk=2)

    def lif_loss(x, tau):
        fin, out = kernels.pallas_multi_step(LIF_STEP, {"v": jnp.zeros(N)}, x,
                                             {"tau": tau, "v_threshold": 1.0, "v_reset": 0.0},
                                             config=cfg)
        return jnp.sum(out) + jnp.sum(fin["v"])
    x = jnp.ones((T, N), jnp.float32)
    _cross_lower(jax.grad(lif_loss, argnums=(0, 1)), x, jnp.float32(2.0))

    # one kernel per rewrite (erf / erfc took 8-20 s each under the Warpgroup semantics' layout
    # inference; well under a second with the fixed layouts of Lane semantics)
    for f in (jnp.floor, jnp.ceil, jnp.arctan, jnp.expm1, jnp.log1p, jnp.sqrt,
              jax.scipy.special.erf, jax.scipy.special.erfc):
        def step(state, x, params, f=f):
            h = state["v"] * 0.5 + f(x)
            return {"v": h}, h

        _cross_lower(lambda x: kernels.pallas_multi_step(step, {"v": jnp.zeros(N)}, x, (),
                                                         config=cfg), x)


def test_auto_choice_per_device_step_and_config(monkeypatch):
    """'auto' on a (pretended) Hopper GPU: Mosaic, except for the steps measured slower there,
    a configuration with a Triton-only option, and inside a shard_map over varying axes;
    Triton on older GPUs. A step only Triton lowers moves to Triton without a warning."""
    from snnjax import kernels as K
    x = jnp.ones((2, 256), jnp.float32)
    lif, izh = neuron.LIFNode(step_mode="m"), neuron.IzhikevichNode(step_mode="m")

    def choice(m, config=None, state=None, xs=x):
        state = m.init_state(xs[0]) if state is None else state
        cfg = K._kernel_config(m.bound_step(), state, xs, m.params(), "auto", config)
        return cfg.backend
    monkeypatch.setattr(K, "_cuda_major", lambda: 8)
    assert K.auto_kernel_backend() == "triton" and choice(lif) == "triton"
    monkeypatch.setattr(K, "_cuda_major", lambda: 9)
    assert K.auto_kernel_backend() == "mosaic" and choice(lif) == "mosaic"
    assert K.step_name(izh.bound_step()) in K.AUTO_TRITON_STEPS and choice(izh) == "triton"
    for triton_only in (dict(num_warps=2), dict(num_stages=2), dict(alias_cotangent=True),
                        dict(block_n=64)):
        assert choice(lif, Config(interpret=True, **triton_only)) == "triton", triton_only
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    seen = []
    jax.shard_map(lambda xs: seen.append(choice(lif, xs=xs)) or xs, mesh=mesh,
                  in_specs=jax.sharding.PartitionSpec("d"),
                  out_specs=jax.sharding.PartitionSpec("d"))(x)
    assert seen == ["triton"]

    def pow_step(state, x, params):   # a traced exponent: no Mosaic rewrite, Triton has pow
        v = state["v"] * 0.5 + jnp.abs(x) ** params["p"]
        return {"v": v}, v
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = K._kernel_config(pow_step, {"v": jnp.zeros(256)}, x, {"p": jnp.float32(1.5)},
                               "auto", None)
    assert cfg.backend == "triton"


def test_auto_triton_steps_name_real_functions():
    """Every entry of ``AUTO_TRITON_STEPS`` is an existing step function (a rename would
    silently move that neuron to Mosaic)."""
    import importlib
    for name in kernels.AUTO_TRITON_STEPS:
        module, fn = name.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), fn)), name
