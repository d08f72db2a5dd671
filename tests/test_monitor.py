"""snnjax.monitor: records equal the layers' outputs computed by hand, eagerly and under
jax.jit / nnx.jit / nnx.scan / grad, and the model is unchanged afterwards."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import functional, layer, monitor, neuron


class Net(nnx.Module):
    def __init__(self, rngs, step_mode="m"):
        self.fc1 = layer.SeqToANNContainer(nnx.Linear(4, 6, rngs=rngs))
        self.sn1 = neuron.LIFNode(step_mode="m", store_v_seq=True)
        self.fc2 = layer.SeqToANNContainer(nnx.Linear(6, 3, rngs=rngs))
        self.sn2 = neuron.IFNode(step_mode="m")

    def __call__(self, x):
        return self.sn2(self.fc2(self.sn1(self.fc1(x))))


def _x():
    return jnp.asarray(np.random.default_rng(0).random((5, 2, 4), np.float32) * 3)


def _by_hand(model, x):
    functional.reset_net(model)
    s1 = model.sn1(model.fc1(x))
    v1 = model.sn1.v_seq
    s2 = model.sn2(model.fc2(s1))
    functional.reset_net(model)
    return np.asarray(s1), np.asarray(v1), np.asarray(s2)


def test_firing_rate_monitor_eager_and_jit_match_the_layer_outputs():
    model = Net(nnx.Rngs(0))
    x = _x()
    s1, v1, s2 = _by_hand(model, x)
    mon = monitor.FiringRateMonitor(model, membrane=True)
    assert mon.monitored_layers == ["sn1", "sn2"]
    graphdef, state = nnx.split(model)
    y, rec = mon(model, x)
    np.testing.assert_array_equal(y, s2)
    assert type(model.sn1) is neuron.LIFNode                   # nothing left patched
    assert set(rec) == {"sn1", "sn2"} and len(rec["sn1"]) == 1
    r1 = rec["sn1"][0]
    np.testing.assert_allclose(r1["firing_rate"], s1.mean(), rtol=1e-6)
    np.testing.assert_array_equal(r1["spike_count"], s1.sum(0))
    assert r1["num_steps"] == 5
    np.testing.assert_array_equal(r1["v"], v1)
    np.testing.assert_allclose(monitor.firing_rates(rec)["sn2"], s2.mean(), rtol=1e-6)
    assert len(mon.records) == 2 and len(mon["sn1"]) == 1       # eager records are kept
    # nnx.jit
    functional.reset_net(model)
    f = nnx.jit(lambda m, x: mon.capture(lambda m, x: m(x))(m, x))
    y2, rec2 = f(model, x)
    np.testing.assert_array_equal(y2, s2)
    np.testing.assert_array_equal(rec2["sn2"][0]["spike_count"], s2.sum(0))
    assert len(mon.records) == 2                                # traced records are not kept
    mon.add(rec2)
    assert len(mon["sn2"]) == 2
    mon.clear_recorded_data()
    assert mon.records == [] and mon["sn1"] == []
    # jax.jit over split/merge: the model's pytree is unchanged by monitoring
    functional.reset_net(model)
    assert nnx.graphdef(model) == graphdef
    g = jax.jit(lambda st, x: mon.capture(lambda m, x: m(x))(nnx.merge(graphdef, st), x))
    y3, rec3 = g(nnx.state(model), x)
    np.testing.assert_array_equal(y3, s2)
    np.testing.assert_allclose(rec3["sn1"][0]["firing_rate"], s1.mean(), rtol=1e-6)
    # vmap over independent inputs: one record per input
    def one(st, x):
        m = nnx.merge(graphdef, st)
        functional.reset_net(m)
        return mon(m, x)
    ys, recs = jax.jit(jax.vmap(one, in_axes=(None, 0)))(nnx.state(model), jnp.stack([x, 0 * x]))
    np.testing.assert_array_equal(ys[0], s2)
    np.testing.assert_array_equal(recs["sn1"][0]["spike_count"][0], s1.sum(0))
    assert float(recs["sn1"][0]["firing_rate"][1]) == 0.0


def test_single_step_records_every_call_and_scan_stacks_them():
    model = nnx.Sequential(layer.Linear(4, 3, rngs=nnx.Rngs(1)), neuron.LIFNode())
    x = _x()
    functional.reset_net(model)
    expect = np.stack([np.asarray(model(x[t])) for t in range(5)])
    functional.reset_net(model)
    mon = monitor.FiringRateMonitor(model)
    c = layer.MultiStepContainer(*model.layers)
    mc = monitor.FiringRateMonitor(c)
    _, rec = mc(c, x)
    assert len(rec["layers.1"]) == 5
    np.testing.assert_array_equal(np.stack([r["spike_count"] for r in rec["layers.1"]]), expect)
    np.testing.assert_allclose(monitor.firing_rates(rec)["layers.1"], expect.mean(), rtol=1e-6)
    functional.reset_net(model)
    functional.init_net_state(model, x[0])

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def run(m, x_t):
        out, r = mon.capture(lambda m, x: m(x))(m, x_t)
        return m, (out, r)
    _, (out, rec) = run(model, x)
    np.testing.assert_array_equal(out, expect)
    np.testing.assert_array_equal(rec["layers.1"][0]["spike_count"], expect)


def test_output_input_and_attribute_monitors_and_grad():
    model = Net(nnx.Rngs(2))
    x = _x()
    s1, v1, s2 = _by_hand(model, x)
    om = monitor.OutputMonitor(model, neuron.LIFNode, lambda s: s.sum(0))
    im = monitor.InputMonitor(model, neuron.IFNode)
    am = monitor.AttributeMonitor("v", True, model, neuron.BaseNode)
    post = monitor.AttributeMonitor("v", False, model, neuron.IFNode)

    def forward(m, x):
        (y, r_out), r_in = im.capture(lambda m, x: om(m, x))(m, x)
        return y, r_out, r_in
    y, r_out, r_in = forward(model, x)
    np.testing.assert_array_equal(r_out["sn1"][0], s1.sum(0))
    fc2 = model.fc2.layers[0]
    np.testing.assert_allclose(r_in["sn2"][0], np.asarray(fc2(s1)), rtol=1e-6)
    functional.reset_net(model)
    _, r_pre = am(model, x)
    assert set(r_pre) == {"sn1", "sn2"} and float(r_pre["sn1"][0]) == 0.0   # before the call
    _, r_pre2 = am(model, x)
    np.testing.assert_array_equal(r_pre2["sn1"][0], model.sn1.v.get_value() * 0 + v1[-1])
    functional.reset_net(model)
    _, r_post = post(model, x)
    np.testing.assert_array_equal(r_post["sn2"][0], model.sn2.v.get_value())
    # records through grad (has_aux)
    functional.reset_net(model)

    def loss(m, x):
        y, rec = om(m, x)
        return functional.firing_rate_mse_loss(y, jnp.array([0, 1])), rec
    grads, rec = nnx.grad(loss, has_aux=True)(model, x)
    np.testing.assert_array_equal(rec["sn1"][0], s1.sum(0))
    assert np.isfinite(np.asarray(grads.fc1.layers[0].kernel.get_value())).all()
    # default instance is type(net), as the reference; disable
    assert monitor.OutputMonitor(model).monitored_layers == [""]
    om.disable()
    _, empty = om(model, x)
    assert empty == {"sn1": []}
    with pytest.raises(TypeError, match="nnx.Module"):
        monitor.OutputMonitor(lambda x: x)
    other = nnx.Sequential(neuron.IFNode())
    with pytest.raises(ValueError, match="lacks the monitored layers"):
        om.enable() or om(other, x[0])


def test_print_and_plot_firing_rates(tmp_path):
    model = Net(nnx.Rngs(3))
    x = _x()
    s1, _, s2 = _by_hand(model, x)
    _, rec = monitor.FiringRateMonitor(model)(model, x)
    buf = io.StringIO()
    rates = monitor.print_firing_rates(rec, file=buf)
    assert rates == pytest.approx({"sn1": float(s1.mean()), "sn2": float(s2.mean())})
    assert "sn1" in buf.getvalue() and f"{s1.mean():.4f}" in buf.getvalue()
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    ax = monitor.plot_firing_rates(rec, tmp_path / "rates.png")
    assert (tmp_path / "rates.png").stat().st_size > 0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sn1", "sn2"]
