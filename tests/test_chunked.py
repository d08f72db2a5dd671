"""The chunked-over-T option (issue 15): ``layer.Chunked`` / ``functional.chunked_forward``.

Reference: the same network called unchunked (``model(x_seq)``), an independent code path (one
multi-step call per layer over all T steps, no checkpoint). Chunked values, final neuron states
and gradients must match it: spikes exactly, membranes and gradients to fp32 rounding (layers
see ``chunk * B`` rows instead of ``T * B``, parameter gradients are summed chunk by chunk).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import functional, layer, neuron

T, B, N_IN, N_HID, N_OUT = 13, 3, 10, 6, 4


class Net(nnx.Module):
    """SHD-like: Linear -> LIF (multi-step) -> Linear -> IF (multi-step)."""

    def __init__(self, seed: int = 0, n_in: int = N_IN, n_hid: int = N_HID):
        rngs = nnx.Rngs(seed)
        self.fc1 = layer.Linear(n_in, n_hid, step_mode="m", rngs=rngs)
        self.sn1 = neuron.LIFNode(tau=2.0, step_mode="m", backend="scan")
        self.fc2 = layer.SeqToANNContainer(layer.Linear(n_hid, N_OUT, rngs=rngs))
        self.sn2 = neuron.IFNode(v_threshold=0.5, v_reset=None, step_mode="m", backend="scan")

    def __call__(self, x_seq):
        return self.sn2(self.fc2(self.sn1(self.fc1(x_seq))))


def _inputs(t: int = T, seed: int = 1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    x = 3.0 * jax.random.normal(k1, (t, B, N_IN))
    w = jax.random.normal(k2, (t, B, N_OUT))
    return x, w


def _loss(model, x, w):
    """Two calls in a row (the second starts from the states the first left): output spikes
    weighted, plus both neurons' final membranes (a gradient through the carried states)."""
    out1 = model(x)
    out2 = model(x[:7])
    inner = model.module if isinstance(model, layer.Chunked) else model
    loss = ((out1 * w).sum() + (out2 * w[:7]).sum() + jnp.square(inner.sn1.v.get_value()).sum()
            + 0.5 * inner.sn2.v.get_value().sum())
    return loss, (out1, out2)


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(a).max()), 1.0)
    np.testing.assert_allclose(b, a, rtol=0, atol=2e-6 * scale)


_grad = nnx.jit(nnx.grad(_loss, argnums=(0, 1), has_aux=True))


@pytest.mark.parametrize("unroll", [1, 2, True], ids=["loop", "unroll2", "unrolled"])
def test_values_states_and_gradients_match_unchunked(unroll):
    x, w = _inputs()
    plain = Net()
    chunked = layer.Chunked(Net(), chunk=4, unroll=unroll)     # 13 = 3 * 4 + 1 (remainder)
    for m in (plain.sn1, chunked.module.sn1):
        m.v = 0.25                                                # a broadcast initial membrane
    (gp, gxp), outs_p = _grad(plain, x, w)
    (gc, gxc), outs_c = _grad(chunked, x, w)
    for a, b in zip(outs_p, outs_c):
        assert float(a.sum()) > 0 and float(a.mean()) < 1        # spikes and silences
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
    for name, n in (("sn1", N_HID), ("sn2", N_OUT)):             # the final states
        p, c = getattr(plain, name), getattr(chunked.module, name)
        assert c.v.get_value().shape == p.v.get_value().shape == (B, n)
        assert float(np.abs(p.v.get_value()).max()) > 0
        _close(p.v.get_value(), c.v.get_value())
        assert c._exact == p._exact == (True,)
    leaves_p, leaves_c = jax.tree_util.tree_leaves(gp), jax.tree_util.tree_leaves(gc)
    assert len(leaves_p) == len(leaves_c) == 4                   # kernels and biases
    for a, b in zip(leaves_p, leaves_c):
        assert float(np.abs(a).max()) > 0
        _close(a, b)
    assert float(np.abs(gxp).max()) > 0
    _close(gxp, gxc)


def _temp_bytes(model, t: int) -> int:
    x = jax.ShapeDtypeStruct((t, 8, 16), jnp.float32)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p, x):
        return nnx.merge(graphdef, p, rest, copy=True)(x).sum()

    compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_chunked_needs_less_temp_memory():
    t = 128
    plain = _temp_bytes(Net(n_in=16, n_hid=64), t)
    chunked = _temp_bytes(layer.Chunked(Net(n_in=16, n_hid=64), chunk=16), t)
    # unchunked: several fp32 [T, B, 64] tensors (256 KiB each) for the backward pass;
    # chunked: one chunk's worth plus T / 16 boundary states
    assert plain > 2 ** 20
    assert chunked < plain / 4, (chunked, plain)


class _WithBN(nnx.Module):
    def __init__(self):
        self.fc = layer.Linear(N_IN, N_HID, step_mode="m", rngs=nnx.Rngs(0))
        self.bn = layer.SeqToANNContainer(nnx.BatchNorm(N_HID, rngs=nnx.Rngs(0)))
        self.sn = neuron.LIFNode(step_mode="m", backend="scan")

    def __call__(self, x):
        return self.sn(self.bn(self.fc(x)))


class _Dropped(nnx.Module):
    def __init__(self):
        self.sn = neuron.LIFNode(step_mode="m", backend="scan")
        self.drop = layer.Dropout(0.5, step_mode="m", rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.drop(self.sn(x))


class _TimeSum(nnx.Module):
    def __init__(self):
        self.sn = neuron.LIFNode(step_mode="m", backend="scan")

    def __call__(self, x):
        return self.sn(x).sum(0)                                  # [B, N]: not time-first


def test_bad_input():
    x, _ = _inputs(t=5)
    for chunk, exc in ((0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError),
                       ("4", TypeError)):
        with pytest.raises(exc, match=r"Chunked: chunk must be a positive int"):
            layer.Chunked(Net(), chunk)
        with pytest.raises(exc, match=r"chunked_forward: chunk must be a positive int"):
            functional.chunked_forward(Net(), x, chunk)
    for unroll, exc in ((0, ValueError), (-1, ValueError), (2.0, TypeError), (False, TypeError),
                        (None, TypeError)):
        with pytest.raises(exc, match=r"Chunked: unroll must be a positive int or True"):
            layer.Chunked(Net(), 2, unroll=unroll)
        with pytest.raises(exc, match=r"chunked_forward: unroll must be a positive int or True"):
            functional.chunked_forward(Net(), x, 2, unroll=unroll)
    with pytest.raises(TypeError, match="Chunked: module must be a flax.nnx.Module"):
        layer.Chunked(lambda x: x, 2)
    with pytest.raises(ValueError, match=r"Chunked: x_seq must be \[T, B, \*\]"):
        layer.Chunked(Net(), 2)(jnp.ones((N_IN,)))
    # state that is not neuron state cannot be carried: batch statistics in training mode
    with pytest.raises(ValueError, match=r"changes \['bn/layers/0/mean', 'bn/layers/0/var'\]"):
        layer.Chunked(_WithBN(), 2)(x)
    model = _WithBN()
    model.eval()                                                  # running statistics: fine
    y = nnx.jit(lambda m, x: functional.chunked_forward(m, x, 8))(model, x)   # 8 >= T: 1 chunk
    functional.reset_net(model)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(nnx.jit(lambda m, x: m(x))(model, x)))
    with pytest.raises(ValueError, match=r"changes \['drop/rngs/count'\]"):   # keys drawn
        layer.Chunked(_Dropped(), 2)(x[..., :N_HID])
    recording = Net()
    recording.sn1.store_v_seq = True
    with pytest.raises(ValueError, match=r"LIFNode at sn1 records its states \(store_v_seq"):
        layer.Chunked(recording, 2)(x)
    with pytest.raises(ValueError, match=r"must map \[T, B, \*\] to \[T, B, \*'\]"):
        layer.Chunked(_TimeSum(), 2)(x)
