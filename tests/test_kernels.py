"""Generated kernels (``backend='pallas'``) against the ``lax.scan`` reference.

On a machine without a GPU the kernels run in Pallas interpret mode; with a GPU the same tests
run the compiled Triton kernels (``multi_step`` picks ``interpret`` from ``jax.default_backend``).
Sizes are small because interpret mode is slow.
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax.kernels as K
from snnjax.kernels import Config, KernelLoweringError, multi_step, scan_multi_step

try:
    from snnjax.surrogate import ATan, Sigmoid
    SIG, ATAN = Sigmoid(), ATan()
except ImportError:  # surrogate package not present yet: a local equivalent
    @jax.custom_vjp
    def _spike(x):
        return (x >= 0).astype(x.dtype)

    def _spike_fwd(x):
        return _spike(x), x

    def _spike_bwd(x, g):
        s = jax.nn.sigmoid(4.0 * x)
        return (g * 4.0 * s * (1.0 - s),)

    _spike.defvjp(_spike_fwd, _spike_bwd)
    SIG = ATAN = _spike

ON_GPU = jax.default_backend() == "gpu"
pallas = functools.partial(multi_step, backend="pallas")


# ------------------------------------------------------------------ toy steps (test-only)

def if_step(state, x, params):
    """IF, hard reset to 0, sigmoid surrogate."""
    h = state["v"] + x
    s = SIG(h - 1.0)
    return {"v": h * (1.0 - s)}, s


def lif_step(state, x, params, *, soft=False, detach=False, sg=SIG):
    """LIF with params {tau, v_th} (scalar or per-neuron), hard/soft reset, detach_reset."""
    v = state["v"]
    h = v + (x - v) / params["tau"]
    s = sg(h - params["v_th"])
    sr = jax.lax.stop_gradient(s) if detach else s
    v_new = h - sr * params["v_th"] if soft else h * (1.0 - sr)
    return {"v": v_new}, s


def adaptive_step(state, x, params):
    """Two states (v, w): adaptive-threshold LIF-like neuron; relu (custom_jvp) output too."""
    v, w = state["v"], state["w"]
    h = v + (x - v - w) / 2.0
    s = ATAN(h - 1.0)
    w_new = w + (params["a"] * v - w + params["b"] * s) / 4.0
    return {"v": h - s, "w": w_new}, (s, jax.nn.relu(h))


def two_in_two_out(state, x, params):
    """Two inputs (a current and a gate), two outputs (spike, membrane)."""
    cur, gate = x
    v = state["v"] * jax.nn.sigmoid(gate) + cur * params["g"]
    s = SIG(v - 0.5)
    return {"v": v * (1.0 - s)}, (s, v)


def _rand(key, shape, dtype=jnp.float32, scale=1.5):
    return (jax.random.normal(key, shape) * scale + 0.3).astype(dtype)


def _close(a, b, rtol, atol, what=""):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                                   rtol=rtol, atol=atol, err_msg=what)


def _loss_fn(engine, step, return_state_seq, key):
    """Weighted sum of every output and state leaf (fixed random weights)."""
    def loss(xs, s0, params):
        st, outs = engine(step, s0, xs, params, return_state_seq=return_state_seq)
        tot = 0.0
        for i, leaf in enumerate(jax.tree_util.tree_leaves((st, outs))):
            w = jax.random.normal(jax.random.fold_in(key, i), leaf.shape)
            tot = tot + jnp.sum(leaf.astype(jnp.float32) * w)
        return tot
    return loss


def check_against_scan(step, s0, xs, params, *, return_state_seq=False, rtol=1e-5, atol=1e-5,
                       grad=True, engine=pallas):
    # jitted: interpret-mode kernels then compile once instead of running op by op
    got = jax.jit(lambda s, x, p: engine(step, s, x, p, return_state_seq=return_state_seq))(
        s0, xs, params)
    want = jax.jit(lambda s, x, p: scan_multi_step(step, s, x, p,
                                                   return_state_seq=return_state_seq))(
        s0, xs, params)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert g.shape == w.shape
    _close(got, want, 1e-6, 1e-6, "forward")
    if grad:
        key = jax.random.key(7)
        gg = jax.jit(jax.grad(_loss_fn(engine, step, return_state_seq, key), (0, 1, 2)))(
            xs, s0, params)
        gw = jax.jit(jax.grad(_loss_fn(scan_multi_step, step, return_state_seq, key),
                              (0, 1, 2)))(xs, s0, params)
        _close(gg, gw, rtol, atol, "gradients")
    return got


# ------------------------------------------------------------------ correctness

K0, K1, K2, K3 = jax.random.split(jax.random.key(0), 4)
T, N = 7, 37


def test_if():
    """Final states are compared by every other test here; this one the state sequence."""
    xs = _rand(K0, (T, N))
    check_against_scan(if_step, {"v": _rand(K1, (N,), scale=0.3)}, xs, (), return_state_seq=True)


# (False, False) is the golden LIF cases' kernel path
@pytest.mark.parametrize("soft,detach", [(True, False), (False, True)])
def test_lif_scalar_params(soft, detach):
    step = functools.partial(lif_step, soft=soft, detach=detach)
    params = {"tau": jnp.float32(2.0), "v_th": jnp.float32(1.0)}
    check_against_scan(step, {"v": jnp.zeros(N)}, _rand(K0, (T, N)), params)


def test_lif_per_neuron_params_state_seq_5d():
    shape = (2, 3, 4, 5)
    step = functools.partial(lif_step, soft=True, sg=ATAN)
    params = {"tau": 1.5 + jax.random.uniform(K2, shape), "v_th": jnp.float32(0.8)}
    check_against_scan(step, {"v": _rand(K1, shape, scale=0.2)}, _rand(K0, (5,) + shape),
                       params, return_state_seq=True)


def test_two_states_custom_jvp_output():
    params = {"a": jnp.float32(0.3), "b": 0.5 + jax.random.uniform(K2, (N,))}
    s0 = {"v": _rand(K1, (N,), scale=0.2), "w": jnp.zeros(N)}
    for seq in (False, True):
        check_against_scan(adaptive_step, s0, _rand(K0, (T, N)), params, return_state_seq=seq)


def test_two_inputs_two_outputs():
    xs = (_rand(K0, (T, N)), _rand(K3, (T, N)))
    check_against_scan(two_in_two_out, {"v": jnp.zeros(N)}, xs, {"g": jnp.float32(0.7)})


def test_several_programs_and_t1():
    """block_n=16: 3 programs for N=37 (padding, shared-param gradient summed over programs)."""
    cfg = Config(block_n=16, interpret=not ON_GPU)
    eng = functools.partial(multi_step, backend="pallas", config=cfg)
    params = {"tau": jnp.float32(2.0), "v_th": 0.9 + 0.2 * jax.random.uniform(K2, (N,))}
    for t in (1, 8):
        check_against_scan(lif_step, {"v": jnp.zeros(N)}, _rand(K0, (t, N)), params, engine=eng)


@pytest.mark.parametrize("residuals", ["save", "recompute"])
def test_scalar_initial_state(residuals):
    """A scalar state0 is one shared row: same results and (summed) gradient as a full array."""
    cfg = Config(block_n=16, chunk=3, residuals=residuals, interpret=not ON_GPU)
    eng = functools.partial(multi_step, backend="pallas", config=cfg)
    params = {"tau": jnp.float32(2.0), "v_th": jnp.float32(1.0)}
    xs = _rand(K0, (T, N))

    def loss(engine, v0, full):
        s0 = {"v": jnp.broadcast_to(v0, (N,)) if full else v0}
        st, out = engine(lif_step, s0, xs, params)
        return jnp.sum(out * jnp.arange(N)) + jnp.sum(st["v"] ** 2)
    v0 = jnp.float32(0.4)
    _close(loss(eng, v0, False), loss(scan_multi_step, v0, True), 1e-6, 1e-6)
    _close(jax.grad(loss, 1)(eng, v0, False), jax.grad(loss, 1)(scan_multi_step, v0, True),
           1e-5, 1e-5)


@pytest.mark.parametrize("chunk,t,residuals", [
    (3, 7, "save"), (3, 7, "recompute"),   # a remainder chunk of 1, then two full chunks
    (4, 8, "recompute"),                   # full chunks only
    (1, 7, "recompute"),                   # one step per chunk: a checkpoint every step
    (16, 7, "save"),                       # T < chunk: one chunk of T steps
    (3, 1, "recompute"),                   # T = 1
])
def test_chunks_and_residual_modes(chunk, t, residuals):
    """Every chunk layout (remainder chunk first, full chunks, T < chunk, T = 1) under both
    residual strategies: two states, two outputs, per-neuron and scalar params, state sequences."""
    cfg = Config(block_n=16, chunk=chunk, residuals=residuals, interpret=not ON_GPU)
    eng = functools.partial(multi_step, backend="pallas", config=cfg)
    params = {"a": jnp.float32(0.3), "b": 0.5 + jax.random.uniform(K2, (N,))}
    s0 = {"v": _rand(K1, (N,), scale=0.2), "w": _rand(K3, (N,), scale=0.1)}
    # state sequences with 'recompute' (the harder residual layout), final states with 'save'
    check_against_scan(adaptive_step, s0, _rand(K0, (t, N)), params,
                       return_state_seq=residuals == "recompute", engine=eng)
    if chunk == 3 and t == 7:   # several inputs and outputs through both chunk layouts
        xs = (_rand(K0, (t, N)), _rand(K3, (t, N)))
        check_against_scan(two_in_two_out, {"v": jnp.full(N, 0.2)}, xs, {"g": jnp.float32(0.7)},
                           engine=eng)


def test_residual_choice():
    """'auto' recomputes when that moves fewer bytes: LIF saves one f32 row per step (8 B
    written and read) against re-reading x (4 B) plus a checkpoint per chunk."""
    from snnjax.kernels.plan import choose_residuals, residual_cost
    from snnjax.kernels.generator import make_plan
    tdef = jax.tree_util.tree_structure
    defs = (tdef({"v": 0}), tdef(0), tdef({"tau": 0, "v_th": 0}))
    plan = make_plan(lif_step, defs, jnp.dtype(jnp.float32), 128, (True,), (False,), None,
                     need=(False, True, False, False))
    sizes = dict(x_itemsizes=(4,), out_itemsize=4, state_itemsizes=(4,))
    assert residual_cost(plan, "save", chunk_len=8, **sizes) == 8.0
    assert residual_cost(plan, "recompute", chunk_len=8, **sizes) == 4.0 + 8.0 / 8
    assert choose_residuals(plan, "auto", chunk_len=8, **sizes).mode == "recompute"
    assert choose_residuals(plan, "auto", chunk_len=1, **sizes).mode == "save"   # 12 B > 8 B
    assert choose_residuals(plan, "save", chunk_len=8, **sizes).mode == "save"
    with pytest.raises(ValueError, match="residuals must be one of"):
        choose_residuals(plan, "sometimes", chunk_len=8, **sizes)
    # the recomputed cut is held in registers: one value (h) per step for LIF
    assert len(plan.recompute.cut) == 1


def test_untraced_scalar_params_become_constants():
    """Python numbers and concrete scalars are baked into the kernels (one kernel per value);
    traced ones stay operands (and get gradients). Either way the results are scan's."""
    from snnjax.kernels.generator import bind_constants
    params = {"tau": 3.0, "v_th": jnp.float32(0.9)}
    bound, rest = bind_constants(lif_step, params)
    assert rest == () and bound != lif_step and hash(bound) == hash(bind_constants(lif_step, params)[0])
    assert bind_constants(lif_step, {"tau": 4.0, "v_th": jnp.float32(0.9)})[0] != bound
    xs = _rand(K0, (T, N))
    for tau in (3.0, 4.0):
        p = {"tau": tau, "v_th": jnp.float32(0.9)}
        got = jax.jit(lambda x: pallas(lif_step, {"v": jnp.zeros(N)}, x, p))(xs)
        _close(got, scan_multi_step(lif_step, {"v": jnp.zeros(N)}, xs, p), 1e-6, 1e-6)
        gx = jax.grad(lambda x: jnp.sum(pallas(lif_step, {"v": jnp.zeros(N)}, x, p)[1] * x))(xs)
        gr = jax.grad(lambda x: jnp.sum(scan_multi_step(lif_step, {"v": jnp.zeros(N)}, x, p)[1]
                                        * x))(xs)
        _close(gx, gr, 1e-5, 1e-5)

    def loss(engine, tau):   # tau traced: an operand, with a gradient
        st, out = engine(lif_step, {"v": jnp.zeros(N)}, xs, {"tau": tau, "v_th": 0.9})
        return jnp.sum(out * jnp.arange(N)) + jnp.sum(st["v"] ** 2)
    _close(jax.grad(functools.partial(loss, pallas))(3.0),
           jax.grad(functools.partial(loss, scan_multi_step))(3.0), 1e-5, 1e-5)


def test_captured_scalar_constant():
    """A closed-over 0-d array is a scalar constant of the step: kernels rebuild it from a
    literal (Pallas kernels must not capture arrays); results and gradients are scan's."""
    c = jnp.float32(0.7)

    def step(state, x, params):
        h = state["v"] * c + x
        s = SIG(h - 1.0)
        return {"v": h * (1.0 - s)}, s
    check_against_scan(step, {"v": jnp.zeros(N)}, _rand(K0, (T, N)), ())


def test_config_errors_and_context():
    xs = _rand(K0, (T, N))
    for bad, msg in [(dict(chunk=0), "Config.chunk"), (dict(chunk=True), "Config.chunk"),
                     (dict(residuals="never"), "Config.residuals"),
                     (dict(block_n=24), "Config.block_n"), (dict(num_warps=3), "Config.num_warps"),
                     (dict(num_stages=0), "Config.num_stages"),
                     (dict(backend="cuda"), "kernel backend")]:
        with pytest.raises(ValueError, match=msg):
            multi_step(if_step, {"v": jnp.zeros(N)}, xs, (), backend="pallas",
                       config=Config(interpret=not ON_GPU, **bad))
    with pytest.raises(ValueError, match="unknown Config fields"):
        with K.default_config(chunks=4):
            pass
    with pytest.raises(ValueError, match="Config.chunk"):
        with K.default_config(chunk=-1):
            pass
    with pytest.raises(TypeError, match="Config.alias_cotangent must be a bool, got 'yes'"):
        with K.default_config(alias_cotangent="yes"):
            pass
    with K.default_config(chunk=2, residuals="save"):
        assert K.current_config().chunk == 2 and K.current_config().residuals == "save"
        check_against_scan(if_step, {"v": jnp.zeros(N)}, xs, ())
    assert K.current_config() == Config(interpret=not ON_GPU)


@pytest.mark.parametrize("dtype,tol", [(jnp.bfloat16, 2e-2), (jnp.float16, 2e-3)])
def test_low_precision_inputs(dtype, tol):
    """Storage in bf16/fp16, arithmetic and state in fp32: compare with scan on upcast inputs;
    outputs and input gradients come back in the input dtype (rounding tolerance ``tol``)."""
    xs = _rand(K0, (T, N), dtype)
    params = {"tau": jnp.float32(2.0), "v_th": jnp.float32(1.0)}
    s0 = {"v": jnp.zeros(N, jnp.float32)}
    st, out = pallas(lif_step, s0, xs, params)
    assert out.dtype == dtype and st["v"].dtype == jnp.float32
    st_r, out_r = scan_multi_step(lif_step, s0, xs.astype(jnp.float32), params)
    _close(out, out_r, 0, 0)
    _close(st, st_r, 1e-6, 1e-6)
    key = jax.random.key(3)
    g = jax.grad(_loss_fn(pallas, lif_step, False, key))(xs, s0, params)
    assert g.dtype == dtype
    g_r = jax.grad(_loss_fn(scan_multi_step, lif_step, False, key))(
        xs.astype(jnp.float32), s0, params)
    _close(g, g_r, tol, tol * float(jnp.max(jnp.abs(g_r))))


@pytest.mark.skipif(ON_GPU, reason="float64 is checked in CPU interpret mode")
def test_float64():
    with jax.enable_x64(True):
        xs = _rand(K0, (T, N), jnp.float64)
        params = {"tau": jnp.float64(2.0), "v_th": jnp.float64(1.0)}
        s0 = {"v": jnp.zeros(N, jnp.float64)}
        st, out = check_against_scan(lif_step, s0, xs, params, rtol=1e-12, atol=1e-12)
        assert out.dtype == jnp.float64 and st["v"].dtype == jnp.float64


def test_jit_vmap_checkpoint():
    params = {"tau": jnp.float32(2.0), "v_th": jnp.float32(1.0)}
    xs = _rand(K0, (3, T, N))  # batch axis in front
    s0 = {"v": jnp.zeros((3, N))}

    def run(engine, x, v0, tau):
        return engine(lif_step, v0, x, {"tau": tau, "v_th": params["v_th"]})

    # vmap over a batch axis (jit outside)
    f = jax.jit(jax.vmap(functools.partial(run, pallas), in_axes=(0, 0, None)))
    r = jax.vmap(functools.partial(run, scan_multi_step), in_axes=(0, 0, None))
    _close(f(xs, s0, params["tau"]), r(xs, s0, params["tau"]), 1e-6, 1e-6)

    # only the spikes enter the loss (final-state cotangent is a symbolic zero)
    v0 = {"v": jnp.zeros(N)}
    gx = jax.grad(lambda x: jnp.sum(pallas(lif_step, v0, x, params)[1] * x))(xs[0])
    gr = jax.grad(lambda x: jnp.sum(scan_multi_step(lif_step, v0, x, params)[1] * x))(xs[0])
    _close(gx, gr, 1e-5, 1e-5)

    # vmap over a population of scalar parameter values, with gradients w.r.t. them
    taus = jnp.array([1.5, 2.0, 4.0])

    def loss(engine, tau):
        st, out = run(engine, xs[0], {"v": jnp.zeros(N)}, tau)
        return jnp.sum(out * jnp.arange(N)) + jnp.sum(st["v"] ** 2)
    gp = jax.vmap(jax.grad(functools.partial(loss, pallas)))(taus)
    gs = jax.vmap(jax.grad(functools.partial(loss, scan_multi_step)))(taus)
    _close(gp, gs, 1e-5, 1e-5)

    # jax.checkpoint around the engine, under jit and grad
    def cl(engine, x):
        return jax.checkpoint(lambda x: loss_x(engine, x))(x)

    def loss_x(engine, x):
        st, out = run(engine, x, {"v": jnp.zeros(N)}, params["tau"])
        return jnp.sum(out * jnp.arange(N)) + jnp.sum(st["v"] ** 2)
    g1 = jax.jit(jax.grad(functools.partial(cl, pallas)))(xs[0])
    g2 = jax.grad(functools.partial(loss_x, scan_multi_step))(xs[0])
    _close(g1, g2, 1e-5, 1e-5)


# ------------------------------------------------------------------ errors, dispatch, caching

def _cumsum_step(state, x, params):
    h = state["v"] + jnp.cumsum(x, axis=-1)
    return {"v": h}, h


def test_non_lowerable_step_error():
    with pytest.raises(KernelLoweringError, match="'cumsum'.*backend='scan'"):
        pallas(_cumsum_step, {"v": jnp.zeros(N)}, _rand(K0, (T, N)), ())
    for table in (jnp.arange(N, dtype=jnp.float32), jnp.ones((1,))):
        def captured(state, x, params, table=table):
            return {"v": state["v"] + x * table}, x
        with pytest.raises(KernelLoweringError, match="as a param"):
            pallas(captured, {"v": jnp.zeros(N)}, _rand(K0, (T, N)), ())


def test_auto_backend(monkeypatch):
    xs = _rand(K0, (T, N))
    # on CPU 'auto' is scan, also for a step that kernels could not run
    r = multi_step(_cumsum_step, {"v": jnp.zeros(N)}, xs, (), backend="auto")
    _close(r, scan_multi_step(_cumsum_step, {"v": jnp.zeros(N)}, xs, ()), 0, 0)
    # pretend to be on a GPU: a non-lowerable step warns once and falls back to scan
    monkeypatch.setattr(K, "on_gpu", lambda: True)
    step = functools.partial(_cumsum_step)
    with pytest.warns(UserWarning, match="cumsum"):
        multi_step(step, {"v": jnp.zeros(N)}, xs, (), backend="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        multi_step(step, {"v": jnp.zeros(N)}, xs, (), backend="auto")
    with pytest.raises(ValueError):
        multi_step(if_step, {"v": jnp.zeros(N)}, xs, (), backend="cuda")


def _count_eqns(jaxpr) -> int:
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _count_eqns(inner)
    return n


def test_program_size_independent_of_T():
    params = {"tau": jnp.float32(2.0), "v_th": jnp.float32(1.0)}

    def size(t):
        def loss(x):
            st, out = pallas(lif_step, {"v": jnp.zeros(N)}, x, params)
            return jnp.sum(out) + jnp.sum(st["v"])
        return _count_eqns(jax.make_jaxpr(jax.value_and_grad(loss))(jnp.ones((t, N))).jaxpr)
    # the program holds one unrolled chunk (plus one remainder chunk), whatever T is
    assert size(64) == size(1024)
    assert size(67) == size(1027)


def test_plan_saves_one_row_for_lif():
    """When only x needs a gradient, LIF's backward needs one saved row per step (h), neither x
    nor the previous state; a gradient w.r.t. tau also needs x (read back, not saved)."""
    from snnjax.kernels.generator import make_plan
    tdef = jax.tree_util.tree_structure
    defs = (tdef({"v": 0}), tdef(0), tdef({"tau": 0, "v_th": 0}))
    f32 = jnp.dtype(jnp.float32)
    plan = make_plan(lif_step, defs, f32, 128, (True,), (False,), None,
                     need=(False, True, False, False))
    assert [src for _, src in plan.residuals] == [("save", 0)]
    plan = make_plan(lif_step, defs, f32, 128, (True,), (False,), None)
    assert sorted(src for _, src in plan.residuals) == [("save", 0), ("x", 0)]


def test_kernel_cache_reused():
    from snnjax.kernels import generator
    xs = _rand(K0, (T, N))
    pallas(if_step, {"v": jnp.zeros(N)}, xs, ())
    before = generator._build.cache_info().hits
    pallas(if_step, {"v": jnp.zeros(N)}, xs + 1.0, ())
    assert generator._build.cache_info().hits == before + 1


@pytest.mark.parametrize("backend", ["triton", "mosaic"])
def test_derivative_primitives_of_newer_jax(backend):
    """Steps with erf, erfc and tanh: JAX 0.12's own derivative rules bring ``polynomial``,
    ``one_minus_square``, ``bitcast_convert_type`` and ``exp(accuracy=...)``, which the kernel
    generator rebuilds or passes on; forward and gradient equal the scan path's (on older JAX
    the same check runs through the plain primitives)."""
    x = jnp.linspace(-3.0, 3.0, 2 * 130).reshape(2, 130)
    for f in (jax.scipy.special.erf, jax.scipy.special.erfc, jnp.tanh):
        def step(state, x, params, f=f):
            h = state["v"] * 0.5 + f(x)
            return {"v": h}, h

        def loss(x, run, **kw):
            fin, out = run(step, {"v": jnp.zeros(130)}, x, (), **kw)
            return jnp.sum(out * jnp.cos(x)) + jnp.sum(fin["v"])
        cfg = K.Config(backend=backend, interpret=True, block_n=128, chunk=2)
        got = jax.value_and_grad(loss)(x, K.pallas_multi_step, config=cfg)
        want = jax.value_and_grad(loss)(x, K.scan_multi_step)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6, err_msg=f.__name__)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6, err_msg=f.__name__)


def test_polynomial_rewrite_is_horner():
    """The ``polynomial`` rewrite (lowest degree first) against ``lax.polynomial`` where the
    installed JAX has it, else against numpy's Horner."""
    from snnjax.kernels import rewrites
    x = jnp.linspace(-2.0, 2.0, 11)
    coeffs = (1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0)
    got = rewrites.polynomial(x, *coeffs)
    want = (jax.lax.polynomial(x, coeffs) if hasattr(jax.lax, "polynomial")
            else np.polynomial.polynomial.polyval(np.asarray(x), coeffs))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_triton_clamp_rewrite_keeps_nan():
    """Triton's ``clamp`` (like its ``max`` / ``min``) drops NaN, so the generator rewrites it for
    that backend into compares and selects with XLA's values: NaN kept, +-inf and finite values
    clamped; a constant bound costs one compare and one select."""
    from snnjax.kernels import jaxpr_tools as jt
    big = float(jnp.finfo(jnp.float32).max)

    def f(x, lo):
        return (jax.lax.clamp(jnp.float32(-big), x, jnp.float32(big)),
                jax.lax.clamp(lo, x, jnp.float32(1.0)))
    x = jnp.asarray([np.nan, np.inf, -np.inf, 2.0, -3.0, 0.5], jnp.float32)
    lo = jnp.asarray([0.0, 0.0, np.nan, 0.0, -1.0, 0.0], jnp.float32)
    avals = [jax.ShapeDtypeStruct(x.shape, x.dtype)] * 2
    flat = jt.flatten_jaxpr(f, avals, rewrites=jt.TRITON_REWRITES)
    names = [e.primitive.name for e in flat.jaxpr.eqns]
    assert "clamp" not in names and "max" not in names and "min" not in names
    got = jax.core.eval_jaxpr(flat.jaxpr, flat.consts, x, lo)
    for g, w in zip(got, f(x, lo)):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    const_only = jt.flatten_jaxpr(
        lambda x: jax.lax.clamp(jnp.float32(-big), x, jnp.float32(big)), avals[:1],
        rewrites=jt.TRITON_REWRITES)
    assert sum(e.primitive.name == "select_n" for e in const_only.jaxpr.eqns) == 2


def test_default_chunk_follows_the_backward_register_need():
    """``Config.chunk=None``: 8 steps for a step whose recompute backward keeps one value per
    step by its equations (LIF, also with a learnable tau or PLIF's w: the value kept for that
    gradient does not count), 4 where it keeps more (ComplementaryLIF, Izhikevich); an explicit
    chunk wins, and the kernels agree with scan either way."""
    from snnjax import neuron
    from snnjax.kernels import generator as G

    def chunk_of(m, learn=()):
        x = jnp.ones((3, 256), jnp.float32)
        found = []

        def plan_chunk(traced):   # a learnable hyperparameter is traced (no constant)
            params = {**m.params(), **traced}
            step, params = G.bind_constants(m.bound_step(), params)
            defs = tuple(jax.tree_util.tree_structure(t)
                         for t in (m.init_state(x[0]), x, params))
            plan = G._plan(step, defs, jnp.dtype(jnp.float32),
                           G.Lowering.of(Config(interpret=True), 128))
            found.append(G.default_chunk(plan))
            return 0.0
        jax.make_jaxpr(plan_chunk)({k: jnp.asarray(m.params()[k]) for k in learn})
        return found[0]
    lif = neuron.LIFNode(step_mode="m")
    assert chunk_of(lif) == 8
    assert chunk_of(lif, learn=("tau",)) == 8
    assert chunk_of(neuron.ParametricLIFNode(step_mode="m"), learn=("w",)) == 8
    assert chunk_of(neuron.ComplementaryLIFNode(step_mode="m")) == 4
    assert chunk_of(neuron.IzhikevichNode(step_mode="m")) == 4
    xs = _rand(K0, (T, N))
    for chunk in (None, 3):
        with K.default_config(chunk=chunk):
            check_against_scan(if_step, {"v": jnp.zeros(N)}, xs, ())
