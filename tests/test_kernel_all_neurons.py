"""Every neuron class with an elementwise step: fused kernels (Pallas; interpret mode without a GPU)
against the ``lax.scan`` reference twin. New classes in ``snnjax.neuron`` are picked up
automatically: a class either passes the kernel generator's check and is compared here, or must be
listed in ``NOT_ELEMENTWISE`` with the reason.
"""
import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import kernels, neuron
from snnjax.neuron.base import MemoryModule, NonSpikingBaseNode

# Constructor arguments for classes that have required arguments (SpikingJelly's signatures).
CTOR_ARGS = {
    "SimpleLIFNode": dict(tau=2.0, decay_input=True),
    "LIAFNode": dict(act=jax.nn.relu, threshold_related=True),
    "NoisyCUBALIFNode": dict(num_node=37, is_training=False),  # eval: noise off, step elementwise
}
# Classes whose step mixes neurons or time, or is not a per-step recurrence (with the reason).
NOT_ELEMENTWISE = {
    "PSN": "a [T, T] matrix product over time, not a recurrence",
    "MaskedPSN": "a masked [T, T] matrix product over time",
    "SlidingPSN": "a causal convolution over time",
    "MPBNLIFNode": "batch normalisation reduces over the batch inside the step",
    "DSRIFNode": "whole-sequence forward with a rate-based custom_vjp",
    "DSRLIFNode": "whole-sequence forward with a rate-based custom_vjp",
    "GatedLIFNode": "gates broadcast per channel over [T, N, C, H, W] with a constructor-fixed T",
    "ILCIFNode": "inter-layer connection: a linear map across neurons inside the step",
    "ILCLIFNode": "inter-layer connection: a linear map across neurons inside the step",
    "ILCCUBALIFNode": "inter-layer connection: a linear map across neurons inside the step",
    "NoisyILCCUBALIFNode": "inter-layer connection: a linear map across neurons inside the step",
}
ABSTRACT = {"MemoryModule", "BaseNode", "SimpleBaseNode", "NonSpikingBaseNode", "FlexSN",
            "NativeFlexSN", "AdaptBaseNode", "MPBNBaseNode", "ILCBaseNode", "NoisyBaseNode",
            "NoisyILCBaseNode", "NoisyNonSpikingBaseNode"}


def neuron_classes():
    out = []
    for name in sorted(neuron.__all__):
        cls = getattr(neuron, name)
        if (inspect.isclass(cls) and issubclass(cls, (MemoryModule, NonSpikingBaseNode))
                and name not in ABSTRACT):
            out.append(name)
    return out


def build(name, backend):
    cls = getattr(neuron, name)
    kwargs = dict(CTOR_ARGS.get(name, {}))
    sig = inspect.signature(cls)
    if "step_mode" in sig.parameters:
        supported = getattr(cls, "supported_step_modes", ("s", "m"))
        kwargs["step_mode"] = "m" if "m" in supported else supported[0]
    if "rngs" in sig.parameters:
        from flax import nnx
        kwargs["rngs"] = nnx.Rngs(0)
    return cls(**kwargs, backend=backend)


def float_leaves_like(tree):
    return jax.tree_util.tree_map(lambda a: jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating), tree)


def run(m, x, backend, config=None, traced_params=True):
    """Outputs, final state and gradients of a loss over every output and the final state:
    w.r.t. input, initial state and params (``traced_params``: params are jit arguments) or
    w.r.t. input and initial state (params are the module's own untraced values, which the kernels
    bake in as constants). ``config``: ``kernels.default_config`` overrides."""
    m.backend = backend
    s0 = m.init_state(x[0])
    params = m.params()

    def loss(x, s0, *params):
        final, out = m.multi_step(s0, x, *params)
        outs = jax.tree_util.tree_leaves(out)
        w = [jnp.cos(jnp.arange(o.size, dtype=jnp.float32).reshape(o.shape)) for o in outs]
        fin = jax.tree_util.tree_leaves(final)
        return (sum(jnp.sum(o.astype(jnp.float32) * wi) for o, wi in zip(outs, w))
                + sum(0.3 * jnp.sum(f.astype(jnp.float32)) for f in fin)), (final, out)

    args = (x, s0, params) if traced_params else (x, s0)
    with kernels.default_config(**(config or {})):
        (val, (final, out)), grads = jax.jit(jax.value_and_grad(
            loss, argnums=tuple(range(len(args))), has_aux=True))(*args)
    return out, final, grads


CLASSES = neuron_classes()


def test_every_class_is_classified():
    for name in CLASSES:
        if name in NOT_ELEMENTWISE:
            continue
        m = build(name, "scan")
        x = jnp.ones((3, 4), jnp.float32)
        kernels.check_step(m.bound_step(), m.init_state(x[0]), x, m.params(),
                           kernels.Config(interpret=True))


ELEMENTWISE = [n for n in CLASSES if n not in NOT_ELEMENTWISE]


# the kernel backend these checks run (the H200 runs them for 'mosaic' too)
KERNEL_BACKEND = os.environ.get("SNNJAX_KERNEL_BACKEND", "pallas")


def compare(name, dtype, shape, config=None, traced_params=True, backend=None):
    key = jax.random.PRNGKey(len(name))
    x = (0.8 * jax.random.normal(key, shape) + 0.6).astype(dtype)
    m = build(name, "scan")
    out_s, fin_s, g_s = run(m, x, "scan", traced_params=traced_params)
    out_p, fin_p, g_p = run(m, x, backend or KERNEL_BACKEND, config,
                            traced_params=traced_params)
    for a, b in zip(jax.tree_util.tree_leaves(out_p), jax.tree_util.tree_leaves(out_s)):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   rtol=1e-6, atol=1e-6, err_msg=f"{name} outputs")
    for a, b in zip(jax.tree_util.tree_leaves(fin_p), jax.tree_util.tree_leaves(fin_s)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{name} final state")
    tol = 1e-5 if dtype == jnp.float32 else float(jnp.finfo(dtype).eps) * 2
    for a, b in zip(jax.tree_util.tree_leaves(g_p), jax.tree_util.tree_leaves(g_s)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=f"{name} gradients")


# CI time: float32 for every class; low precision for every other class (bf16 and fp16
# alternating), the forced saved-residual strategy for the remaining classes
DTYPE_CASES = [(n, "float32") for n in ELEMENTWISE] + [
    (n, ("bfloat16", "float16")[i % 4 // 2]) for i, n in enumerate(ELEMENTWISE) if i % 2 == 0]
SAVED_RESIDUAL_CASES = [n for i, n in enumerate(ELEMENTWISE) if i % 2 == 1]


@pytest.mark.parametrize("name,dtype", DTYPE_CASES)
def test_pallas_matches_scan(name, dtype):
    """The modules' own kernel path; N is not a multiple of any block. float32: the default
    configuration (T = 9: a remainder step, then one chunk of 8), params traced (their gradients
    checked too); bf16/fp16: 2-step chunks (a remainder step, then four loop iterations; short
    chunks also keep interpret mode fast), the module's own params, baked in as constants."""
    dtype = jnp.dtype(dtype)
    f32 = dtype == jnp.float32
    width = CTOR_ARGS.get(name, {}).get("num_node", 13)   # noisy layers check their width
    compare(name, dtype, (9, 37) if f32 else (9, 3, width), None if f32 else dict(chunk=2),
            traced_params=f32)


@pytest.mark.parametrize("name", SAVED_RESIDUAL_CASES)
def test_pallas_matches_scan_saved_residuals(name):
    """The other residual strategy, forced (the default picks 'recompute' for nearly every
    class): saved rows, 3-step chunks (T = 7: a remainder of 1, then two full chunks) and several
    programs (block of 16 for N = 37)."""
    if KERNEL_BACKEND == "mosaic":   # Mosaic blocks are >= 128: 2 programs, the 2nd overlapping
        compare(name, jnp.dtype(jnp.float32), (7, 165), dict(chunk=3, residuals="save",
                                                             block_n=128))
    else:
        compare(name, jnp.dtype(jnp.float32), (7, 37), dict(chunk=3, residuals="save",
                                                            block_n=16))


def test_default_residuals_are_exercised():
    """The default test above runs 'recompute' for these classes and 'save' for the rest: both
    strategies stay covered when the choice rule changes."""
    from snnjax.kernels.generator import _cached_plan
    from snnjax.kernels.plan import choose_residuals
    modes = set()
    for name in ELEMENTWISE:
        m = build(name, "scan")
        x = jnp.ones((9, 37))
        s0, p = m.init_state(x[0]), m.params()
        defs = tuple(jax.tree_util.tree_structure(a) for a in (s0, x, p))
        plan = _cached_plan(m.bound_step(), defs, jnp.dtype(jnp.float32),
                            128, (True,) * 4, (False,) * defs[0].num_leaves, None)
        modes.add(choose_residuals(plan, "auto", x_itemsizes=(4,) * defs[1].num_leaves,
                                   out_itemsize=4, state_itemsizes=(4,) * defs[0].num_leaves,
                                   chunk_len=8).mode)
    assert modes == {"save", "recompute"}


def test_kernel_cache_follows_module_configuration():
    """Switching train/eval after a kernel was built must build the other kernel (the cache key
    is the module's static configuration, not the bound method)."""
    x = 1.3 * jax.random.normal(jax.random.PRNGKey(3), (6, 33)) + 0.6
    m = neuron.ComplementaryLIFNode(step_mode="m", backend="pallas")

    def grad(m):
        return jax.grad(lambda x: jnp.sum(m.multi_step(m.init_state(x[0]), x)[1]))(x)

    assert np.any(np.asarray(grad(m)) != 0)           # training: surrogate gradient
    m.eval()
    np.testing.assert_array_equal(grad(m), 0.0)        # eval: hard step, no gradient
    m.train()
    assert np.any(np.asarray(grad(m)) != 0)
    # two neurons with equal configuration share a step key; a different one does not
    a, b, c = neuron.LIFNode(), neuron.LIFNode(), neuron.LIFNode(detach_reset=True)
    assert a.bound_step() == b.bound_step()
    assert a.bound_step() != c.bound_step()
