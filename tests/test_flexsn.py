"""FlexSN / FlexSNKernel against SpikingJelly 2.0.0's FlexSN data and against LIFNode."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import neuron
from golden_checks import SIG, lif_core, plif_core, two_input_core









BACKENDS = ["scan", "pallas"]










def test_single_step_mode_and_native_form():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 7)) + 0.6
    f_m = neuron.FlexSN(lif_core, num_states=1)
    f_s = neuron.FlexSN(lif_core, num_states=1, step_mode="s")
    out_s = jnp.stack([f_s(x[t]) for t in range(5)])
    np.testing.assert_array_equal(out_s, f_m(x))

    def step(state, x, params):
        h = state["v"] + (x - state["v"]) / params["tau"]
        s = SIG(h - 1.0)
        return {"v": h * (1.0 - s)}, s

    g = neuron.FlexSN.from_step(step, lambda x: {"v": jnp.zeros_like(x)}, {"tau": 2.0})
    np.testing.assert_array_equal(g(x), f_m.multi_step(f_m.init_state(x[0]), x)[1][0])
    # per-neuron learnable tau
    g2 = neuron.FlexSN.from_step(step, lambda x: {"v": jnp.zeros_like(x)},
                                 {"tau": nnx.Param(jnp.full((7,), 2.0))})
    grads = nnx.grad(lambda m: m(x).sum())(g2)
    assert grads["tau"].get_value().shape == (7,)


def test_flexsn_kernel_callable():
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 9)) + 0.6
    k = neuron.FlexSNKernel(plif_core, num_inputs=1, num_states=1, num_outputs=1,
                            num_static_inputs=1)
    s, v = k(x, jnp.zeros(9), jnp.asarray(0.0))
    f = neuron.FlexSN(plif_core, num_states=1, static_inputs=(jnp.asarray(0.0),))
    np.testing.assert_array_equal(s, f(x))
    np.testing.assert_allclose(v, f.states[0], rtol=1e-6)
    ks = neuron.FlexSNKernel(plif_core, 1, 1, 1, 1, store_state_seqs=True)
    assert ks(x, jnp.zeros(9), jnp.asarray(0.0))[1].shape == (6, 9)
    g = jax.grad(lambda w: k(x, jnp.zeros(9), w)[0].sum())(0.0)
    assert np.isfinite(g)


def test_errors():
    with pytest.raises(TypeError, match=r"\*args"):
        neuron.FlexSN(lambda *a: a, num_states=1)
    with pytest.raises(ValueError, match="at least one step input"):
        neuron.FlexSN(lambda v: (v,), num_states=1)
    with pytest.raises(ValueError, match="num_states"):
        neuron.FlexSN(lif_core, num_states=-1)
    with pytest.raises(ValueError, match="floating point"):
        neuron.FlexSN(lambda x, v: (x >= 1, v), num_states=1)
    with pytest.raises(RuntimeError, match="unit arrays"):
        neuron.FlexSN(lambda x, v: (x.reshape(2, 2), v), num_states=1)
    f = neuron.FlexSN(two_input_core, num_states=2)
    with pytest.raises(ValueError, match="2 step input"):
        f(jnp.ones((3, 4)))
    with pytest.raises(TypeError, match="static_inputs"):
        neuron.FlexSN(plif_core, 1, static_inputs=("w",))
