"""snnjax.nir: NIR export and import, checked against an independent NumPy simulation of NIR's
equations under forward Euler (channels-first, float64) and by export/import round trips."""
import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nir  # noqa: E402  (in the test extra)

import snnjax  # noqa: E402
from snnjax import functional, layer, neuron  # noqa: E402
from snnjax import nir as snnir  # noqa: E402

EDGE = 1e-4   # spiking nodes of the NumPy simulation must stay this far from the threshold


# --- an independent NumPy simulator of NIR graphs (forward Euler, channels first) ---------------

def _chain(graph):
    succ = dict(graph.edges)
    cur = next(k for k, n in graph.nodes.items() if isinstance(n, nir.Input))
    order = []
    while not isinstance(graph.nodes[cur], nir.Output):
        cur = succ[cur]
        order.append(graph.nodes[cur])
    return order[:-1]


def _conv(x, w, b, stride, pad):
    """x [N, C, H, W], w [O, C, kh, kw]; zero padding, no dilation."""
    (sh, sw), (ph, pw) = stride, pad
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, _, kh, kw = w.shape
    ho, wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], o, ho, wo)) + b[None, :, None, None]
    for u in range(kh):
        for v in range(kw):
            patch = x[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, u, v])
    return y


def _pool(x, k, s, mean):
    ho, wo = (x.shape[2] - k[0]) // s[0] + 1, (x.shape[3] - k[1]) // s[1] + 1
    y = np.zeros(x.shape[:2] + (ho, wo))
    for u in range(k[0]):
        for v in range(k[1]):
            y += x[:, :, u:u + s[0] * (ho - 1) + 1:s[0], v:v + s[1] * (wo - 1) + 1:s[1]]
    return y / (k[0] * k[1]) if mean else y


def simulate(graph, x, dt):
    """Run the graph on x [T, B, *] (NIR layout). Returns (output, smallest |v - v_th|)."""
    x = np.asarray(x, np.float64)
    margin = np.inf
    for node in _chain(graph):
        t, b = x.shape[:2]
        if isinstance(node, (nir.Affine, nir.Linear)):
            x = x @ node.weight.T + (node.bias if isinstance(node, nir.Affine) else 0.0)
        elif isinstance(node, nir.Conv2d):
            assert node.groups == 1 and tuple(node.dilation) == (1, 1)
            y = _conv(x.reshape((t * b,) + x.shape[2:]), node.weight, node.bias,
                      tuple(node.stride), tuple(node.padding))
            x = y.reshape((t, b) + y.shape[1:])
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            assert not np.any(node.padding)
            y = _pool(x.reshape((t * b,) + x.shape[2:]), tuple(node.kernel_size),
                      tuple(node.stride), isinstance(node, nir.AvgPool2d))
            x = y.reshape((t, b) + y.shape[1:])
        elif isinstance(node, nir.Flatten):
            x = x.reshape(t, b, -1)                        # (c, h, w) order
        else:
            out = []
            spiking = not isinstance(node, (nir.LI, nir.I))
            v = np.broadcast_to(node.v_reset if spiking else 0.0, x.shape[1:]).astype(np.float64)
            cur = np.zeros(x.shape[1:])
            for step in range(t):
                if isinstance(node, (nir.IF, nir.I)):
                    v = v + dt * node.r * x[step]
                elif isinstance(node, (nir.LIF, nir.LI)):
                    v = v + dt / node.tau * (node.v_leak - v + node.r * x[step])
                elif isinstance(node, nir.CubaLIF):     # current first, then the membrane
                    cur = cur + dt / node.tau_syn * (-cur + node.w_in * x[step])
                    v = v + dt / node.tau_mem * (node.v_leak - v + node.r * cur)
                else:
                    raise AssertionError(type(node))
                if not spiking:
                    out.append(v)
                    continue
                margin = min(margin, float(np.abs(v - node.v_threshold).min()))
                z = v > node.v_threshold
                v = np.where(z, node.v_reset, v)
                out.append(z.astype(np.float64))
            x = np.stack(out)
    return x, margin


_ZEROS = dict(kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.zeros)
_run = nnx.jit(lambda model, x: model(x))    # one compilation per model structure


def _set(module, rng, scale, bias_scale=0.1):
    """Weights from NumPy (no per-shape JAX initialiser compilations)."""
    module.kernel.set_value(jnp.asarray(rng.normal(0, scale, module.kernel.shape), jnp.float32))
    if module.bias is not None:
        module.bias.set_value(jnp.asarray(rng.normal(0, bias_scale, module.bias.shape),
                                          jnp.float32))
    return module


def _linear(rng, i, o, scale=0.6, bias=True, plain=False):
    m = (nnx.Linear(i, o, use_bias=bias, rngs=nnx.Rngs(0), **_ZEROS) if plain
         else layer.Linear(i, o, bias=bias, rngs=nnx.Rngs(0), **_ZEROS))
    return _set(m, rng, scale)


def _nhwc_to_nchw(x):
    return np.asarray(x).transpose(0, 1, 4, 2, 3)


def _full(shape, value):
    return np.full(shape, value, np.float64)


# --- export, round trip ----------------------------------------------------------------------

def test_mlp_lif_euler_parameters_numpy_and_round_trip():
    dt = 1e-3
    rng = np.random.default_rng(0)
    model = nnx.Sequential(
        _linear(rng, 6, 5),
        neuron.LIFNode(tau=2.5, decay_input=True, v_threshold=0.5, v_reset=-0.1, step_mode="m"),
        _linear(rng, 5, 3, scale=0.8, bias=False, plain=True),
        neuron.LIFNode(tau=4.0, decay_input=False, v_threshold=0.3, step_mode="m"))
    x = jnp.asarray(rng.uniform(0, 2, (8, 3, 6)), jnp.float32)
    y = np.asarray(_run(model, x))                 # the neurons now hold [3, *] states
    before = jax.tree_util.tree_map(np.asarray, nnx.state(model))
    g = snnir.to_nir(model, jax.ShapeDtypeStruct((8, 1, 6), jnp.float32), dt=dt)
    after = jax.tree_util.tree_map(np.asarray, nnx.state(model))
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, after)   # model untouched

    assert [type(g.nodes[k]).__name__ for k in ("input", "0", "1", "2", "3", "output")] == \
        ["Input", "Affine", "LIF", "Linear", "LIF", "Output"]
    assert g.edges == [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    np.testing.assert_array_equal(g.nodes["input"].input_type["input"], [6])
    kernel0, kernel2 = (np.asarray(model.layers[i].kernel.get_value()) for i in (0, 2))
    np.testing.assert_array_equal(g.nodes["0"].weight, kernel0.T)           # (out, in)
    np.testing.assert_array_equal(g.nodes["0"].bias, np.asarray(model.layers[0].bias.get_value()))
    np.testing.assert_array_equal(g.nodes["2"].weight, kernel2.T)
    lif1, lif2 = g.nodes["1"], g.nodes["3"]
    for node, tau, r, leak, th, shape in ((lif1, 2.5, 1.0, -0.1, 0.5, (5,)),
                                          (lif2, 4.0, 4.0, 0.0, 0.3, (3,))):
        np.testing.assert_allclose(node.tau, _full(shape, tau * dt), rtol=1e-15)
        np.testing.assert_allclose(node.r, _full(shape, r), rtol=1e-15)
        np.testing.assert_array_equal(node.v_leak, _full(shape, leak))
        np.testing.assert_array_equal(node.v_reset, _full(shape, leak))
        np.testing.assert_array_equal(node.v_threshold, _full(shape, th))
    assert g.metadata["dt"] == dt

    sim, margin = simulate(g, x, dt)
    assert margin > EDGE and 0 < y.sum() < y.size
    np.testing.assert_array_equal(y, sim)

    back = snnir.from_nir(g, dt=dt)
    lifs = [m for m in back.layers if isinstance(m, neuron.LIFNode)]
    assert [(m.tau, m.decay_input, m.v_reset, m.step_mode) for m in lifs] == \
        [(2.5, True, -0.1, "m"), (4.0, False, 0.0, "m")]
    np.testing.assert_array_equal(np.asarray(_run(back, x)), y)


def test_conv_avgpool_flatten_if_export_numpy_and_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    conv = _set(layer.Conv2d(2, 3, 3, padding=1, rngs=nnx.Rngs(0), **_ZEROS), rng, 0.5)
    model = nnx.Sequential(
        layer.SeqToANNContainer(conv, layer.AvgPool2d(2)),
        neuron.IFNode(v_threshold=0.4, step_mode="m"),
        layer.SeqToANNContainer(layer.Flatten(), _linear(rng, 12, 4)),
        neuron.IFNode(v_threshold=0.3, step_mode="m"))
    x = jnp.asarray(rng.uniform(0, 2, (5, 2, 4, 4, 2)), jnp.float32)
    dt = 1e-4
    g = snnir.to_nir(model, x)
    assert [(k, type(n).__name__) for k, n in g.nodes.items()] == [
        ("input", "Input"), ("0_0", "Conv2d"), ("0_1", "AvgPool2d"), ("1", "IF"),
        ("2_0", "Flatten"), ("2_1", "Affine"), ("3", "IF"), ("output", "Output")]
    np.testing.assert_array_equal(g.nodes["input"].input_type["input"], [2, 4, 4])   # (C, H, W)
    kernel = np.asarray(conv.kernel.get_value())                                   # [kh, kw, I, O]
    np.testing.assert_array_equal(g.nodes["0_0"].weight, kernel.transpose(3, 2, 0, 1))
    assert tuple(g.nodes["0_0"].padding) == (1, 1) and tuple(g.nodes["0_0"].stride) == (1, 1)
    assert g.nodes["1"].r.shape == (3, 2, 2)
    np.testing.assert_allclose(g.nodes["1"].r, _full((3, 2, 2), 1e4), rtol=1e-15)
    # Affine columns follow NIR's (c, h, w) flatten: column c*4 + h*2 + w is kernel row h*6 + w*3 + c
    k2 = np.asarray(model.layers[2].layers[1].kernel.get_value())
    w2 = g.nodes["2_1"].weight
    for c, h, w in ((0, 0, 1), (2, 1, 0), (1, 1, 1)):
        np.testing.assert_array_equal(w2[:, c * 4 + h * 2 + w], k2[h * 6 + w * 3 + c])

    y = np.asarray(_run(model, x))
    sim, margin = simulate(g, _nhwc_to_nchw(x), dt)
    assert margin > EDGE and 0 < y.sum() < y.size
    np.testing.assert_array_equal(y, sim)

    path = tmp_path / "csnn.nir"
    nir.write(path, g)
    back = snnir.from_nir(str(path))                        # read back with nir.read
    assert isinstance(back.layers[0], layer.SeqToANNContainer)
    assert [type(m).__name__ for m in back.layers[0].layers] == ["Conv2d", "AvgPool2d"]
    np.testing.assert_array_equal(np.asarray(_run(back, x)), y)


def test_plain_nnx_conv_sum_pool_and_dropout_export_matches_numpy():
    rng = np.random.default_rng(11)
    conv = _set(nnx.Conv(2, 3, (3, 3), rngs=nnx.Rngs(0), **_ZEROS), rng, 0.5)   # 'SAME'
    model = nnx.Sequential(
        conv, neuron.IFNode(v_threshold=0.5, step_mode="m"),
        layer.Dropout(0.5, step_mode="m", rngs=nnx.Rngs(0)),
        layer.SeqToANNContainer(layer.AvgPool2d(2, divisor_override=1), layer.Flatten()),
        _linear(rng, 12, 3, scale=0.5, plain=True), neuron.LIFNode(v_threshold=0.5, step_mode="m"))
    model.eval()                                              # dropout: the identity
    x = jnp.asarray(rng.uniform(0, 2, (6, 2, 4, 4, 2)), jnp.float32)
    g = snnir.to_nir(model, x)
    assert [type(n).__name__ for n in g.nodes.values()] == [
        "Input", "Conv2d", "IF", "SumPool2d", "Flatten", "Affine", "LIF", "Output"]
    assert tuple(g.nodes["0"].padding) == (1, 1)              # 'SAME' of a 3x3 kernel
    y = np.asarray(_run(model, x))
    sim, margin = simulate(g, _nhwc_to_nchw(x), 1e-4)
    assert margin > EDGE and 0 < y.sum() < y.size
    np.testing.assert_array_equal(y, sim)


def test_hand_written_graph_matches_numpy_euler():
    """A graph written from NIR's definitions (channels first) runs to the NumPy simulation."""
    dt = 1e-4
    rng = np.random.default_rng(4)
    conv_w, conv_b = rng.normal(0, 0.4, (3, 2, 3, 3)), rng.normal(0, 0.1, 3)
    w1, b1 = rng.normal(0, 0.5, (4, 12)), rng.normal(0.1, 0.1, 4)
    w2 = rng.normal(0.3, 0.5, (3, 4))
    nodes = {
        "in": nir.Input(input_type=np.array([2, 5, 5])),
        "conv": nir.Conv2d(input_shape=(5, 5), weight=conv_w, stride=1, padding=0, dilation=1,
                           groups=1, bias=conv_b),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]),
                              padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
        "fc1": nir.Affine(weight=w1, bias=b1),
        "lif1": nir.LIF(tau=_full(4, 3 * dt), r=_full(4, 1.0), v_leak=_full(4, -0.2),
                        v_threshold=_full(4, 0.6), v_reset=_full(4, -0.2)),
        "fc2": nir.Linear(weight=w2),
        "lif2": nir.LIF(tau=_full(3, 2 * dt), r=_full(3, 2.0), v_leak=_full(3, 0.0),
                        v_threshold=_full(3, 0.25), v_reset=_full(3, 0.0)),
        "out": nir.Output(output_type=np.array([3])),
    }
    names = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])))
    x_nchw = rng.uniform(0, 1, (8, 2, 2, 5, 5))
    sim, margin = simulate(g, x_nchw, dt)
    assert margin > EDGE and 0 < sim.sum() < sim.size
    model = snnir.from_nir(g, dt=dt)
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["SeqToANNContainer", "LIFNode", "SeqToANNContainer", "LIFNode"]
    assert (model.layers[1].decay_input, model.layers[3].decay_input) == (True, False)
    x = jnp.asarray(x_nchw.transpose(0, 1, 3, 4, 2), jnp.float32)        # channels last
    np.testing.assert_array_equal(np.asarray(_run(model, x)), sim)


def test_cuba_lif_and_li_euler_parameters_numpy_and_round_trip():
    dt = 1e-4
    rng = np.random.default_rng(5)
    model = nnx.Sequential(
        _linear(rng, 4, 3),
        neuron.CUBALIFNode(c_decay=0.4, v_decay=0.7, v_threshold=0.5, step_mode="m"),
        _linear(rng, 3, 2),
        neuron.NonSpikingLIFNode(tau=3.0))
    x = jnp.asarray(rng.uniform(0, 1, (10, 2, 4)), jnp.float32)
    g = snnir.to_nir(model, x, dt=dt)
    cuba, li = g.nodes["1"], g.nodes["3"]
    assert isinstance(cuba, nir.CubaLIF) and isinstance(li, nir.LI)
    for field, value in (("tau_syn", dt / 0.6), ("tau_mem", dt / 0.3), ("r", 1 / 0.3),
                         ("w_in", 1 / 0.6), ("v_leak", 0.0), ("v_reset", 0.0),
                         ("v_threshold", 0.5)):
        np.testing.assert_allclose(getattr(cuba, field), _full((3,), value), rtol=1e-14)
    for field, value in (("tau", 3 * dt), ("r", 1.0), ("v_leak", 0.0)):
        np.testing.assert_allclose(getattr(li, field), _full((2,), value), rtol=1e-14)

    y = np.asarray(_run(model, x))                             # LI membrane [T, B, 2]
    sim, margin = simulate(g, x, dt)
    assert margin > EDGE
    np.testing.assert_allclose(y, sim, rtol=1e-5, atol=1e-6)   # float32 vs float64
    back = snnir.from_nir(g, dt=dt)
    assert isinstance(back.layers[1], neuron.CUBALIFNode)
    assert np.isclose(back.layers[1].c_decay, 0.4) and np.isclose(back.layers[1].v_decay, 0.7)
    np.testing.assert_array_equal(np.asarray(_run(back, x)), y)


def test_plif_exports_its_current_tau_and_returns_as_lif():
    dt = 1e-4
    rng = np.random.default_rng(8)
    plif_a = neuron.ParametricLIFNode(init_tau=2.0, decay_input=True, v_threshold=0.4,
                                      step_mode="m")
    plif_b = neuron.ParametricLIFNode(init_tau=3.0, decay_input=False, v_threshold=0.4,
                                      step_mode="m")
    plif_b.w.set_value(jnp.asarray(0.4, jnp.float32))        # "trained": tau = 1/sigmoid(0.4)
    model = nnx.Sequential(_linear(rng, 4, 4, scale=1.0), plif_a, _linear(rng, 4, 3, scale=1.0),
                           plif_b)
    x = jnp.asarray(rng.uniform(0, 3, (8, 2, 4)), jnp.float32)
    g = snnir.to_nir(model, x, dt=dt)
    tau_b = 1.0 + np.exp(-0.4)                               # 1 / sigmoid(0.4)
    assert isinstance(g.nodes["1"], nir.LIF) and isinstance(g.nodes["3"], nir.LIF)
    np.testing.assert_allclose(g.nodes["1"].tau, _full((4,), 2.0 * dt), rtol=1e-6)
    np.testing.assert_allclose(g.nodes["3"].tau, _full((3,), tau_b * dt), rtol=1e-6)
    np.testing.assert_allclose(g.nodes["3"].r, _full((3,), tau_b), rtol=1e-6)
    back = snnir.from_nir(g, dt=dt)
    assert type(back.layers[1]) is neuron.LIFNode and type(back.layers[3]) is neuron.LIFNode
    assert back.layers[3].decay_input is False
    y = np.asarray(_run(model, x))
    sim, margin = simulate(g, x, dt)
    assert margin > EDGE and 0 < y.sum() < y.size
    np.testing.assert_array_equal(y, sim)
    np.testing.assert_array_equal(np.asarray(_run(back, x)), y)


def test_nested_sequential_and_multistep_container_round_trip():
    rng = np.random.default_rng(9)
    model = nnx.Sequential(
        nnx.Sequential(_linear(rng, 4, 5), neuron.LIFNode(v_threshold=0.3, step_mode="m")),
        layer.MultiStepContainer(_linear(rng, 5, 3), neuron.IFNode(v_threshold=0.3)))
    x = jnp.asarray(rng.uniform(0, 2, (6, 2, 4)), jnp.float32)
    g = snnjax.nir.to_nir(model, x)                           # lazy attribute access
    assert [k for k in g.nodes] == ["input", "0_0", "0_1", "1_0", "1_1", "output"]
    y = np.asarray(_run(model, x))
    sim, margin = simulate(g, x, 1e-4)
    assert margin > EDGE and 0 < y.sum() < y.size
    np.testing.assert_array_equal(y, sim)
    np.testing.assert_array_equal(np.asarray(_run(snnir.from_nir(g), x)), y)


# --- what NIR cannot express -----------------------------------------------------------------

def _lin(i, o):
    return layer.Linear(i, o, rngs=nnx.Rngs(0), **_ZEROS)


TO_NIR_ERRORS = {
    "soft_reset": (lambda: nnx.Sequential(_lin(3, 2), neuron.LIFNode(v_reset=None, step_mode="m")),
                   (4, 2, 3), NotImplementedError, r"'1' \(LIFNode\).*soft reset.*v_reset"),
    "psn": (lambda: nnx.Sequential(_lin(3, 2), neuron.PSN(T=4, rngs=nnx.Rngs(0))),
            (4, 2, 3), NotImplementedError, r"'1' \(PSN\).*all time steps"),
    "maxpool": (lambda: layer.SeqToANNContainer(layer.MaxPool2d(2)), (4, 2, 2, 2, 1),
                NotImplementedError, r"'0' \(MaxPool2d\).*no max pooling"),
    "function": (lambda: nnx.Sequential(_lin(3, 2), nnx.relu), (4, 2, 3), NotImplementedError,
                 r"'1' \(function relu\) has no NIR equivalent"),
    "flatten_at_output": (lambda: nnx.Sequential(layer.SeqToANNContainer(layer.Flatten()),
                                                 neuron.IFNode(step_mode="m")),
                          (4, 2, 2, 2, 3), NotImplementedError,
                          r"flatten at module '0.0'.*\(c, h, w\).*graph's output"),
    "single_step_neuron": (lambda: nnx.Sequential(_lin(3, 2), neuron.IFNode()), (4, 2, 3),
                           ValueError, r"'1' \(IFNode\) has step_mode='s'.*whole \[T, B, \*\]"),
    "decode": (lambda: nnx.Sequential(_lin(3, 2), neuron.NonSpikingLIFNode(decode="max-mem")),
               (4, 2, 3), NotImplementedError, r"'1'.*decode='max-mem'"),
    "cuba_no_decay": (lambda: nnx.Sequential(_lin(3, 2), neuron.CUBALIFNode(c_decay=1.0,
                                                                           step_mode="m")),
                      (4, 2, 3), NotImplementedError, r"'1'.*c_decay=1"),
    "not_a_sequence": (lambda: _lin(3, 2), (2, 3), ValueError, r"\[T, B, \*\].*\(2, 3\)"),
}


@pytest.mark.parametrize("case", list(TO_NIR_ERRORS))
def test_to_nir_errors_name_module_and_reason(case):
    build, shape, exc, match = TO_NIR_ERRORS[case]
    with pytest.raises(exc, match=match):
        snnir.to_nir(build(), jax.ShapeDtypeStruct(shape, jnp.float32))


def _lif(n, tau=3e-4, r=1.0, leak=0.0, reset=0.0):
    return nir.LIF(tau=_full(n, tau), r=_full(n, r), v_leak=_full(n, leak),
                   v_threshold=_full(n, 1.0), v_reset=_full(n, reset))


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _line(*middle, n_in=3, n_out=4):
    nodes = {"input": nir.Input(input_type=np.array([n_in])), **dict(middle),
             "output": nir.Output(output_type=np.array([n_out]))}
    names = list(nodes)
    return _graph(nodes, list(zip(names[:-1], names[1:])))


AFFINE = ("affine", nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)))
FROM_NIR_ERRORS = {
    "unmappable": (lambda: _line(("delay", nir.Delay(delay=np.ones(3))), n_out=3),
                   NotImplementedError, r"'delay' is a NIR Delay.*cannot map"),
    "recurrent": (lambda: _graph(dict([("input", nir.Input(input_type=np.array([3]))), AFFINE,
                                       ("lif", _lif(4)),
                                       ("output", nir.Output(output_type=np.array([4])))]),
                                 [("input", "affine"), ("affine", "lif"), ("lif", "output"),
                                  ("lif", "affine")]),
                  NotImplementedError, r"recurrent edge 'lif' -> 'affine'"),
    "branch": (lambda: _graph(dict([("input", nir.Input(input_type=np.array([3]))), AFFINE,
                                    ("lif", _lif(3)),
                                    ("output", nir.Output(output_type=np.array([4])))]),
                              [("input", "affine"), ("input", "lif"), ("affine", "output"),
                               ("lif", "output")]),
               NotImplementedError, r"'input' has 2 outgoing edges"),
    "shapes": (lambda: _line(AFFINE, ("lif", _lif(5)), n_out=5), ValueError,
               r"'lif' \(LIF\) expects input shape \(5,\) but receives \(4,\)"),
    "lif_r": (lambda: _line(AFFINE, ("lif", _lif(4, r=2.0))), NotImplementedError,
              r"'lif' \(LIF\) has r=2.*1 \(decay_input=True\), 3 \(decay_input=False"),
    "lif_v_leak": (lambda: _line(AFFINE, ("lif", _lif(4, leak=0.1, reset=0.0))),
                   NotImplementedError, r"'lif' \(LIF\) has v_leak=0.1.*v_reset"),
    "per_neuron": (lambda: _line(AFFINE, ("lif", nir.LIF(
        tau=np.array([3e-4, 4e-4, 3e-4, 3e-4]), r=_full(4, 1.0), v_leak=_full(4, 0.0),
        v_threshold=_full(4, 1.0), v_reset=_full(4, 0.0)))),
        NotImplementedError, r"'lif' \(LIF\): tau takes different values per neuron"),
    "flatten_to_output": (lambda: _graph(
        {"input": nir.Input(input_type=np.array([2, 2, 2])),
         "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
         "output": nir.Output(output_type=np.array([8]))},
        [("input", "flat"), ("flat", "output")]),
        NotImplementedError, r"Flatten node 'flat'.*\(c, h, w\).*graph's Output"),
    "tau_too_small": (lambda: _line(AFFINE, ("lif", _lif(4, tau=1e-4))), ValueError,
                      r"'lif' \(LIF\).*tau"),
    "not_a_graph": (lambda: nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), TypeError,
                    r"nir.NIRGraph.*Affine"),
}


@pytest.mark.parametrize("case", list(FROM_NIR_ERRORS))
def test_from_nir_errors_name_node_and_reason(case):
    build, exc, match = FROM_NIR_ERRORS[case]
    with pytest.raises(exc, match=match):
        snnir.from_nir(build())


def test_import_snnjax_without_nir(monkeypatch):
    """``import snnjax`` works without the nir package; snnjax.nir asks for the extra."""
    monkeypatch.setitem(sys.modules, "nir", None)          # any `import nir` now fails
    monkeypatch.delitem(sys.modules, "snnjax.nir")
    monkeypatch.delattr(snnjax, "nir", raising=False)      # restored after the test
    importlib.reload(snnjax)
    assert "snnjax.nir" not in sys.modules                  # not imported by `import snnjax`
    module = snnjax.nir                                     # lazy: imports without nir
    with pytest.raises(ImportError, match=r"pip install 'snnjax\[nir\]'"):
        module.to_nir(_lin(3, 2), jax.ShapeDtypeStruct((2, 1, 3), jnp.float32))
    with pytest.raises(ImportError, match=r"snnjax\[nir\]"):
        module.from_nir(None)
