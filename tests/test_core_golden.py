"""IF / LIF / PLIF, their Simple* and NonSpiking* variants, against SpikingJelly 2.0.0 data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import kernels, neuron
from golden_utils import (assert_close, case_names, check_module_case, load_case, precision,
                          vjp_check)

SPIKING = ["IFNode", "LIFNode", "ParametricLIFNode", "SimpleIFNode", "SimpleLIFNode"]
NONSPIKING = ["NonSpikingIFNode", "NonSpikingLIFNode"]


def _cases(classes):
    return [n for c in classes for n in case_names(c)]


def test_every_core_class_has_golden_cases():
    for c in SPIKING + NONSPIKING:
        assert case_names(c), c


@pytest.mark.parametrize("name", _cases(SPIKING))
def test_spiking_golden(name):
    case = load_case(name)
    cls = getattr(neuron, case.meta["class"])
    with precision(case):
        module = cls(**case.kwargs, step_mode="m", backend="scan")
        check_module_case(module, case)


@pytest.mark.parametrize("name", _cases(SPIKING))
def test_spiking_golden_stateful_call(name):
    """``module(x)`` in both step modes gives the golden output and final membrane."""
    case = load_case(name)
    cls = getattr(neuron, case.meta["class"])
    if "v_init" in case or "param_w" in case and case.meta["kwargs"].get("init_tau", 2.0) != 2.0:
        pytest.skip("needs a non-default initial state / parameter")
    with precision(case):
        x = jnp.asarray(case["x"])
        m = cls(**case.kwargs, step_mode="m")
        assert_close(m(x), case["out"], case, "binary", "out (stateful, m)")
        assert_close(m.v, case["v_final"], case, "value", "v (stateful, m)")
        s = cls(**case.kwargs, step_mode="s")
        outs = [s(x[t]) for t in range(x.shape[0])]
        assert_close(jnp.stack(outs), case["out"], case, "binary", "out (stateful, s)")
        assert_close(s.v, case["v_final"], case, "value", "v (stateful, s)")


@pytest.mark.parametrize("name", _cases(NONSPIKING))
def test_nonspiking_golden(name):
    case = load_case(name)
    cls = getattr(neuron, case.meta["class"])
    with precision(case):
        module = cls(**case.kwargs)
        x = jnp.asarray(case["x"])
        f = jax.jit(lambda p: {"out": module(p["x"])})
        assert_close(f({"x": x})["out"], case["out"], case, "value", "out")
        vjp_check(f, {"x": x}, {"out": case["gout"]}, case, {"x": "grad_x"})
        _, v_seq = kernels.multi_step(module.bound_step(), module.init_state(x[0]), x,
                                      module.params(), backend="scan")
        assert_close(v_seq, case["v_seq"], case, "value", "v_seq")


def test_reference_vectors_fp32():
    """Spec core.md section 8 (float32): spikes, final v, dL/dx, dL/dw."""
    x = jnp.asarray([[1.5, 0.4], [0.4, 0.9], [1.2, 0.3], [0.2, 1.6]], jnp.float32)

    def grads(m):
        def loss(x, p):
            st, out = m.multi_step(m.init_state(x[0]), x, p)
            return out.sum() + 0.5 * st["v"].sum(), (out, st["v"])
        return jax.grad(loss, argnums=(0, 1), has_aux=True)(x, m.params())

    (gx, gp), (s, v) = grads(neuron.IFNode(v_reset=None))
    np.testing.assert_array_equal(s, [[1, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_allclose(v, [0.29999995, 1.2], rtol=1e-6)
    np.testing.assert_allclose(gx[:, 0], [0.9968976, 0.9946512, 0.8627003, 0.8557889], rtol=2e-6)
    m = neuron.ParametricLIFNode(init_tau=3.0, decay_input=False, v_reset=None, detach_reset=True)
    (gx, gp), (s, v) = grads(m)
    np.testing.assert_allclose(v, [0.65925926, 0.8740741], rtol=1e-6)
    np.testing.assert_allclose(gp["w"], -0.70112181, rtol=1e-5)
    np.testing.assert_allclose(gx[0], [1.368274, 1.2254212], rtol=1e-5)
