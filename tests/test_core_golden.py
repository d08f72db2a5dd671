"""IF / LIF / PLIF, their Simple* and NonSpiking* variants, against SpikingJelly 2.0.0 data."""
import jax
import jax.numpy as jnp
import numpy as np

from snnjax import neuron
from golden_utils import case_names

SPIKING = ["IFNode", "LIFNode", "ParametricLIFNode", "SimpleIFNode", "SimpleLIFNode"]
NONSPIKING = ["NonSpikingIFNode", "NonSpikingLIFNode"]


def _cases(classes):
    return [n for c in classes for n in case_names(c)]










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
