"""ILC and noisy neurons against SpikingJelly 2.0.0 data (``tests/golden``), plus the API around
them: noise reproducibility, train/eval, noise replay, vmap, single vs multi step, bad arguments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import functional, neuron, surrogate
from snnjax.noise import powerlaw_psd_gaussian
from golden_utils import assert_close, case_names, is_binary, learnable_params, load_case, precision, vjp_check
from golden_checks import _pure_noise

ILC = ["ILCIFNode", "ILCLIFNode", "ILCCUBALIFNode"]
NOISY_SPIKING = ["NoisyCUBALIFNode", "NoisyILCCUBALIFNode"]
NOISY_NONSPIKING = ["NoisyNonSpikingIFNode"]


def _cases(classes):
    return [n for c in classes for n in case_names(c)]


def _build(case, **extra):
    cls = getattr(neuron, case.meta["class"])
    kwargs = {"rngs": nnx.Rngs(0), **case.kwargs, **extra}
    return cls(**kwargs)


def _set_params(m, case):
    """Load the reference's parameter values into the module."""
    if "param_conn_weight" in case:
        m.conn.weight.set_value(jnp.asarray(case["param_conn_weight"]))
        m.conn.bias.set_value(jnp.asarray(case["param_conn_bias"]))
    if "param_sigma" in case:
        m.sigma.set_value(jnp.asarray(case["param_sigma"]))








# --- ILC ---------------------------------------------------------------------------------------





@pytest.mark.parametrize("name", ["ILCLIFNode__params", "ILCCUBALIFNode__default"])
def test_ilc_vmap_over_samples(name):
    case = load_case(name)
    with precision(case):
        m = _build(case)
        params = learnable_params(case)
        x = jnp.swapaxes(jnp.asarray(case["x"]), 0, 1)[:, :, None]  # [N, T, 1, A*P]

        def one(xs):
            return m.multi_step(m.init_state(xs[0]), xs, params)[1]

        out = jax.jit(jax.vmap(one))(x)[:, :, 0]
        assert_close(jnp.swapaxes(out, 0, 1), case["out"], case, "binary", "out (vmap)")


def test_ilc_vmap_over_hyperparameters():
    """A population of thresholds in one call equals separate calls."""
    m = neuron.ILCLIFNode(2, 3, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (6, 4, 6)) + 0.6
    ths = jnp.array([0.5, 0.9, 1.3])
    outs = jax.vmap(lambda th: m.multi_step(m.init_state(x[0]), x, {"v_threshold": th})[1])(ths)
    for i, th in enumerate([0.5, 0.9, 1.3]):
        ref = neuron.ILCLIFNode(2, 3, v_threshold=th, rngs=nnx.Rngs(1))
        np.testing.assert_array_equal(outs[i], ref(x))
    assert not np.array_equal(outs[0], outs[2])


def test_ilc_reference_worked_example():
    """Spec research-ilc-noisy.md: ILCLIFNode(2, 2) with fixed conn, float32."""
    m = neuron.ILCLIFNode(2, 2, rngs=nnx.Rngs(0))
    m.conn.weight.set_value(0.1 * (jnp.arange(8.0) - 3).reshape(4, 1, 2))
    m.conn.bias.set_value(jnp.array([0.05, -0.05, 0.1, 0.0]))
    x = jnp.array([[[1.2, 0.5, 0.9, 1.1]], [[0.4, 0.8, 0.2, 0.3]], [[0.6, 0.6, 0.9, 0.1]]])
    out = m(x)
    np.testing.assert_array_equal(out.reshape(-1), [1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(m.v[0], [0.5625, 0.55, 0, 0.925], rtol=1e-6, atol=1e-7)


def test_ilc_connection_init_and_names():
    m = neuron.ILCCUBALIFNode(3, 4, rngs=nnx.Rngs(0))
    params = nnx.state(m, nnx.Param)
    flat = {tuple(str(p) for p in path) for path, _ in nnx.to_flat_state(params)}
    assert flat == {("conn", "weight"), ("conn", "bias")}
    w, b = m.conn.weight.get_value(), m.conn.bias.get_value()
    assert w.shape == (12, 1, 4) and b.shape == (12,) and w.dtype == jnp.float32
    bound = 1 / np.sqrt(4)
    assert np.all(np.abs(w) <= bound) and np.all(np.abs(b) <= bound)
    assert np.abs(w).max() > 0.6 * bound  # actually spread over the range
    same = neuron.ILCCUBALIFNode(3, 4, rngs=nnx.Rngs(0))
    other = neuron.ILCCUBALIFNode(3, 4, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(w, same.conn.weight.get_value())
    assert not np.allclose(w, other.conn.weight.get_value())
    # the grouped map: group g only sees its own P inputs
    s = jnp.zeros((1, 12)).at[0, 5].set(1.0)  # neuron 1 of group 1
    fb = m.conn(s)[0]
    np.testing.assert_allclose(fb[:4], b[:4])
    np.testing.assert_allclose(fb[4:8], b[4:8] + w[4:8, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(fb[8:], b[8:])


def test_ilc_soft_reset_matches_ifnode_without_feedback():
    """v_reset=None works (the reference crashes): with conn = 0 an ILCIFNode is an IFNode with
    soft reset; outputs, final v and input gradients agree."""
    x = jax.random.normal(jax.random.key(2), (7, 3, 6)) * 0.8 + 0.5
    ilc = neuron.ILCIFNode(2, 3, v_reset=None, rngs=nnx.Rngs(0))
    ilc.conn.weight.set_value(jnp.zeros((6, 1, 3)))
    ilc.conn.bias.set_value(jnp.zeros(6))
    ref = neuron.IFNode(v_reset=None, surrogate_function=surrogate.Rect(), step_mode="m")

    def run(m):
        def f(x):
            st, out = m.multi_step(m.init_state(x[0]), x)
            return jnp.sum(out * jnp.cos(x)) + st["v"].sum(), (out, st["v"])
        return jax.grad(f, has_aux=True)(x)

    (g1, (o1, v1)), (g2, (o2, v2)) = run(ilc), run(ref)
    assert float(o1.sum()) > 0
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_allclose(v1, v2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6)
    assert float(ilc.init_state(x[0])["v"].sum()) == 0.0


def test_ilc_bf16_input_keeps_fp32_state():
    m = neuron.ILCLIFNode(2, 3, rngs=nnx.Rngs(0))
    x = (jax.random.normal(jax.random.key(0), (4, 2, 6)) + 0.8).astype(jnp.bfloat16)
    st, out = m.multi_step(m.init_state(x[0]), x)
    assert out.dtype == jnp.bfloat16 and st["v"].dtype == jnp.float32
    assert st["feedback"].dtype == jnp.float32


def test_ilc_bad_arguments():
    with pytest.raises(ValueError, match="act_dim must be a positive int"):
        neuron.ILCIFNode(0, 3, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="dec_pop_dim must be a positive int"):
        neuron.ILCIFNode(2, 2.5, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
        neuron.ILCLIFNode(2, 3, rngs=None)
    with pytest.raises(TypeError, match="v_threshold must be a real number"):
        neuron.ILCIFNode(2, 3, v_threshold="1", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="v_decay must be a real number"):
        neuron.ILCLIFNode(2, 3, v_decay=None, rngs=nnx.Rngs(0))
    m = neuron.ILCCUBALIFNode(2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="act_dim \\* dec_pop_dim = 6"):
        m(jnp.ones((4, 2, 5)))
    with pytest.raises(ValueError, match="time-first"):
        m(jnp.ones((6,)))
    with pytest.raises(ValueError, match="supports step_mode in \\('m',\\)"):
        functional.set_step_mode(m, "s")
    with pytest.raises(ValueError, match="unknown params"):
        m.multi_step(m.init_state(jnp.ones((2, 6))), jnp.ones((3, 2, 6)), {"tau": 2.0})


# --- noisy spiking -----------------------------------------------------------------------------

def check_noisy_spiking_case(m, case):
    x = jnp.asarray(case["x"])
    params = learnable_params(case)
    noise = _pure_noise(m, case)
    state0 = m.init_state(x[0])
    out_kind = "binary" if is_binary(case["out"]) else "value"

    @jax.jit
    def run(p):
        seq, out = m.multi_step(p["state"], p["x"], p["params"], noise=p["noise"],
                                return_state_seq=True)
        return {"out": out, "seq": seq}

    primals = {"x": x, "state": state0, "params": params, "noise": noise}
    res = run(primals)
    assert res["out"].dtype == x.dtype
    assert_close(res["out"], case["out"], case, out_kind, "out")
    for name in ("v", "c"):
        assert_close(res["seq"][name], case[f"{name}_seq"], case, "value", f"{name}_seq")
        assert_close(res["seq"][name][-1], case[f"{name}_final"], case, "value", f"{name}_final")
    if "spike_clean" in case:
        n_s = noise[1] if noise[1].ndim == x.ndim else noise[1][:, None]  # shared by the batch
        sigma_s = np.float32(m.sigma_s) if n_s.dtype == jnp.float32 else m.sigma_s
        assert_close(res["out"] - sigma_s * n_s, case["spike_clean"], case, "value",
                     "spike_clean")
    grad_keys = {"x": "grad_x"}
    for k in params:
        grad_keys[("params", k)] = f"grad_param_{k}"
    vjp_check(lambda p: {"out": run(p)["out"]}, primals, {"out": case["gout"]}, case, grad_keys)

    # single steps
    step = jax.jit(m.step)
    state, outs = state0, []
    for t in range(x.shape[0]):
        n_t = None if noise is None else tuple(n[t] for n in noise)
        state, o = step(state, x[t], params, noise=n_t)
        outs.append(o)
    assert_close(jnp.stack(outs), case["out"], case, out_kind, "out (single-step)")
    assert_close(state["v"], case["v_final"], case, "value", "v_final (single-step)")






def test_noisy_spiking_vmap_over_samples():
    """Per-sample noise (a replay batch) under vmap equals the batched golden run."""
    case = load_case("NoisyCUBALIFNode__loaded_noise")
    with precision(case):
        m = _build(case)
        n_v, n_s = _pure_noise(m, case)  # [T, B, K]
        x = jnp.asarray(case["x"])

        def one(x, n_v, n_s):  # x [T, K], noise [T, K]
            return m.multi_step(m.init_state(x[0]), x, noise=(n_v, n_s))[1]

        out = jax.jit(jax.vmap(one, in_axes=1, out_axes=1))(x, n_v, n_s)
        assert_close(out, case["out"], case, "value", "out (vmap)")


def test_noisy_ilc_vmap_shared_noise():
    case = load_case("NoisyILCCUBALIFNode__train")
    with precision(case):
        m = _build(case)
        params = learnable_params(case)
        noise = _pure_noise(m, case)  # [T, K], shared by the batch
        x = jnp.swapaxes(jnp.asarray(case["x"]), 0, 1)[:, :, None]  # [N, T, 1, K]

        def one(xs):
            return m.multi_step(m.init_state(xs[0]), xs, params, noise=noise)[1]

        out = jnp.swapaxes(jax.jit(jax.vmap(one))(x)[:, :, 0], 0, 1)
        assert_close(out, case["out"], case, "value", "out (vmap)")


def test_noisy_cubalif_reference_worked_example():
    """Spec research-ilc-noisy.md: NoisyCUBALIFNode(2, T=3) with loaded noise, float32."""
    m = neuron.NoisyCUBALIFNode(2, T=3)
    cn = jnp.array([[[0.5, -1.0, 0.2, 0.1], [1.5, 0.3, -0.4, 0.0], [-0.2, 0.8, 1.0, -1.0]]])
    m.load_colored_noise(cn)
    out = m(jnp.array([[[0.3, 0.4]], [[0.2, 0.1]], [[0.5, -0.2]]]))
    np.testing.assert_allclose(m.sigma_v, 0.353553, atol=1e-6)
    np.testing.assert_allclose(out.reshape(-1), [0.070711, 0.035355, 0.858579, 0, 1.353553,
                                                 -0.353553], atol=2e-6)
    np.testing.assert_allclose(m.v[0], [0, 0.395581], atol=2e-6)
    np.testing.assert_allclose(m.c[0], [0.913648, 0.197487], atol=2e-6)


# --- noisy non-spiking -------------------------------------------------------------------------



def test_noisy_nonspiking_last_mem_alias_and_sigma_init():
    m = neuron.NoisyNonSpikingIFNode(16, decode="last_mem", is_training=False)
    x = jax.random.normal(jax.random.key(0), (5, 2, 16))
    np.testing.assert_allclose(m(x), x.sum(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.sigma.get_value(), np.full(16, 0.5 / 4), rtol=1e-7)
    assert m.sigma.get_value().dtype == jnp.float32


# --- noise: reproducibility, life-cycle, train/eval ---------------------------------------------

def test_reset_noise_is_reproducible_and_continuous():
    """Same seed -> same noise and output; different seed -> different. eps[r, t, k] is one
    coloured series per neuron and kind, continuous across RL steps."""
    def make(seed):
        m = neuron.NoisyCUBALIFNode(6, T=4, beta=1.0, rngs=nnx.Rngs(noise=seed))
        m.reset_noise(3)
        return m

    a, b, c = make(0), make(0), make(1)
    assert a.eps_seq.shape == (3, 4, 12) and a.eps_seq.dtype == jnp.float32
    np.testing.assert_array_equal(a.eps_seq, b.eps_seq)
    assert not np.allclose(a.eps_seq, c.eps_seq)
    stream = nnx.Rngs(noise=0)["noise"].fork()
    y_v = powerlaw_psd_gaussian(1.0, (6, 12), key=stream(), dtype=jnp.float32)
    y_s = powerlaw_psd_gaussian(1.0, (6, 12), key=stream(), dtype=jnp.float32)
    np.testing.assert_array_equal(a.eps_v_seq, y_v.reshape(6, 3, 4).transpose(1, 2, 0))
    np.testing.assert_array_equal(a.eps_s_seq, y_s.reshape(6, 3, 4).transpose(1, 2, 0))
    x = jax.random.normal(jax.random.key(5), (4, 2, 6)) + 0.4
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.allclose(a(x), c(x))


def test_noise_steps_advance_and_run_out():
    m = neuron.NoisyCUBALIFNode(5, T=3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 2, 5)) + 0.3  # T' = 4 > T: extra step ignored
    with pytest.raises(ValueError, match="reset_noise"):
        m(x)
    m.reset_noise(2)
    outs = []
    for r in range(2):
        outs.append(m(x))
        assert int(m.noise_step.get_value()) == r
        assert outs[-1].shape == (3, 2, 5)
        cn = m.get_colored_noise()
        np.testing.assert_array_equal(cn, m.eps_seq[r])
        # the pure API with that noise reproduces the call
        _, out = m.multi_step(m.init_state(x[0]), x[:3], noise=(cn[:, :5], cn[:, 5:]))
        np.testing.assert_array_equal(out, outs[-1])
    assert not np.allclose(outs[0], outs[1])
    with pytest.raises(IndexError, match="used up"):
        m(x)
    m.load_colored_noise(m.eps_seq[:1])
    np.testing.assert_array_equal(m(x), outs[0])
    m.cancel_load()
    with pytest.raises(IndexError, match="used up"):
        m(x)


def test_noisy_call_under_nnx_jit():
    """The stateful call works under nnx.jit; noise_step advances across jitted calls."""
    m = neuron.NoisyCUBALIFNode(5, T=3, beta=2.0, rngs=nnx.Rngs(0))
    eager = neuron.NoisyCUBALIFNode(5, T=3, beta=2.0, rngs=nnx.Rngs(0))
    m.reset_noise(2)
    eager.reset_noise(2)
    x = jax.random.normal(jax.random.key(1), (3, 2, 5)) + 0.3
    f = nnx.jit(lambda m, x: m(x))
    for r in range(2):
        np.testing.assert_allclose(f(m, x), eager(x), rtol=1e-6, atol=1e-6)
        assert int(m.noise_step.get_value()) == r
    assert np.all(np.isnan(f(m, x)))  # exhausted under jit: NaN noise instead of an exception


def test_train_eval_follow_nnx_mode():
    """noise on in training, off in evaluation, switched by model.train() / model.eval() (the
    reference keeps a separate is_training flag)."""
    case_eval = load_case("NoisyCUBALIFNode__eval")
    case_train = load_case("NoisyCUBALIFNode__loaded_noise")

    class Net(nnx.Module):
        def __init__(self):
            self.node = neuron.NoisyCUBALIFNode(24, T=5, beta=1.0, sigma_init=0.5)

    with precision("float64"):
        net = Net()
        x = jnp.asarray(case_eval["x"])
        assert net.node.is_training and not net.node.deterministic
        net.eval()
        assert not net.node.is_training
        assert_close(net.node(x), case_eval["out"], case_eval, "binary", "out (eval)")
        # eval ignores the noise also in the pure API
        _, out = net.node.multi_step(net.node.init_state(x[0]), x,
                                     noise=_pure_noise(net.node, case_train))
        assert_close(out, case_eval["out"], case_eval, "binary", "out (eval, pure)")
        net.train()
        assert net.node.is_training
        net.node.load_colored_noise(jnp.asarray(case_train["cn"]))
        assert_close(net.node(jnp.asarray(case_train["x"])), case_train["out"], case_train,
                     "value", "out (train)")
        view = nnx.view(net, deterministic=True)
        assert view.node.deterministic and not net.node.deterministic
        net.node.is_training = False
        assert net.node.deterministic
    nonspiking = neuron.NoisyNonSpikingIFNode(4, is_training=False)
    nonspiking.train()
    assert nonspiking.is_training


def test_noisy_nonspiking_reset_noise():
    m = neuron.NoisyNonSpikingIFNode(4, T=3, beta=1.0, decode=None, rngs=nnx.Rngs(3))
    m.reset_noise(2)
    assert m.eps_seq.shape == (2, 3, 4)
    x = jnp.zeros((3, 2, 4))
    v = m(x)
    np.testing.assert_allclose(v, jnp.cumsum(m.sigma.get_value() * m.get_colored_noise(), 0)
                               [:, None].repeat(2, 1), rtol=1e-6, atol=1e-7)


def test_noisy_bad_arguments():
    with pytest.raises(ValueError, match="num_node must be a positive int"):
        neuron.NoisyCUBALIFNode(0)
    with pytest.raises(ValueError, match="T must be a positive int"):
        neuron.NoisyCUBALIFNode(4, T=0)
    with pytest.raises(TypeError, match="is_training must be True or False"):
        neuron.NoisyCUBALIFNode(4, is_training="yes")
    with pytest.raises(ValueError, match="decode must be one of"):
        neuron.NoisyNonSpikingIFNode(4, decode="last_memory")
    with pytest.raises(TypeError, match="rngs must be a flax.nnx.Rngs"):
        neuron.NoisyILCCUBALIFNode(2, 2, rngs=None)
    with pytest.raises(ValueError, match="backend must be one of"):
        neuron.NoisyCUBALIFNode(4, backend="cuda")
    m = neuron.NoisyCUBALIFNode(4, T=3)
    with pytest.raises(ValueError, match="rngs=nnx.Rngs"):
        m.reset_noise(1)
    with pytest.raises(ValueError, match="load_colored_noise expects cn of shape"):
        m.load_colored_noise(jnp.zeros((2, 3, 4)))
    m.load_colored_noise(jnp.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match="has 2 time steps but the layer runs T = 3"):
        m(jnp.zeros((2, 2, 4)))
    x = jnp.zeros((3, 2, 4))
    with pytest.raises(ValueError, match="needs the noise"):
        m.multi_step(m.init_state(x[0]), x)
    with pytest.raises(ValueError, match="does not broadcast"):
        m.multi_step(m.init_state(x[0]), x, noise=(jnp.zeros((3, 5)), jnp.zeros((3, 5))))
    with pytest.raises(ValueError, match="time-first"):
        m.multi_step(m.init_state(x[0]), x, noise=(jnp.zeros((4, 4)), jnp.zeros((4, 4))))
    with pytest.raises(ValueError, match="supports step_mode in"):
        functional.set_step_mode(m, "s")
    ilc = neuron.NoisyILCCUBALIFNode(2, 2, rngs=nnx.Rngs(0))
    assert ilc.num_node == 4 and ilc.v_threshold == 1.0
    with pytest.raises(ValueError, match="last input axis must hold num_node = 4"):
        ilc.eval()
        ilc(jnp.zeros((5, 2, 3)))
