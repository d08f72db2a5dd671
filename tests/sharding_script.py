"""Multi-device checks, run by ``tests/test_sharding.py`` in a subprocess with 4 virtual CPU
devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``; the rest of the suite keeps
one device). Prints one ``ok <name>`` line per check; any failure raises (non-zero exit).

Every sharded result is compared with the same function run unsharded on one device.
"""
from __future__ import annotations

import os
import pathlib
import re
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]

import registry  # noqa: E402
from snnjax import neuron  # noqa: E402

assert jax.device_count() == 4, jax.devices()
MESH = jax.sharding.Mesh(np.array(jax.devices()), ("data",))          # Auto axes
EMESH = jax.make_mesh((4,), ("data",))                                 # Explicit axes
COLLECTIVES = ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter")
ONLY = set(sys.argv[1:])


def check(name):
    def deco(fn):
        if not ONLY or any(o in name for o in ONLY):
            t0 = time.perf_counter()
            fn()
            print(f"ok {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        return fn
    return deco


def close(a, b, what, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                   err_msg=what)


def spec_of(a):
    """The sharding spec of ``a`` (an array, or a traced value's type), trailing Nones dropped."""
    sh = a.sharding if isinstance(a, jax.Array) else jax.typeof(a).sharding
    spec = list(sh.spec)
    while spec and spec[-1] is None:
        spec.pop()
    return tuple(spec)


def collectives(compiled_text):
    return {c: len(re.findall(rf"\b{c}(-start)?\(", compiled_text)) for c in COLLECTIVES}


# --- the neurons: values, input and parameter gradients, in three mesh contexts ---------------

T, B, F = 4, 8, 6
KEY = jax.random.PRNGKey(0)
X = jax.random.normal(KEY, (T, B, F)) + 0.6
W_OUT = jax.random.normal(jax.random.PRNGKey(1), (T, B, F))


def pure(m, x, params):
    """Output sequence of the pure API from the neuron's initial state."""
    if isinstance(m, neuron.FlexSN):
        return m.multi_step(m.init_state((x[0],)), (x,), params)[1][0]
    return m.multi_step(m.init_state(x[0]), x, params)[1]


CASES = {   # name -> (registry entry, params override (learnable / per-neuron), backends)
    "LIFNode": ("LIFNode", lambda: {"tau": jnp.linspace(1.5, 4.0, F)}, ("scan", "pallas")),
    "ParametricLIFNode": ("ParametricLIFNode", lambda: {"w": jnp.asarray(-0.3)}, ("pallas",)),
    "CUBALIFNode": ("CUBALIFNode", lambda: None, ("scan",)),
    "FlexSN": ("FlexSN", lambda: None, ("pallas",)),
}


def loss_and_grads(m):
    def loss(x, w, p):
        return jnp.sum(pure(m, x, p) * w)

    def f(x, w, p):
        out = pure(m, x, p)
        g = jax.grad(loss, argnums=(0, 2) if p else 0)(x, w, p)
        return out, g
    return f


def run_case(name, backend):
    entry, make_p, _ = CASES[name]
    m = registry.build(registry.entry(entry), backend)
    f = loss_and_grads(m)
    p = make_p()
    ref = jax.jit(f)(X, W_OUT, p)
    # plain jax.jit, NamedSharding inputs (Auto axes)
    xs, ws = jax.device_put((X, W_OUT), NamedSharding(MESH, P(None, "data")))
    out = jax.jit(f)(xs, ws, p)
    close(out, ref, f"{name}/{backend}: jit with NamedSharding")
    assert spec_of(out[0]) == (None, "data"), out[0].sharding
    # jax.set_mesh with Explicit axes
    with jax.set_mesh(EMESH):
        xe, we = jax.device_put((X, W_OUT), P(None, "data"))
        out = jax.jit(f)(xe, we, p)
        if backend == "pallas":   # the kernels ran (inside shard_map), not the scan twin
            assert "pallas_call" in str(jax.make_jaxpr(f)(xe, we, p)), name
        assert spec_of(out[0]) == (None, "data"), jax.typeof(out[0])
        s0 = m.init_state((xe[0],)) if isinstance(m, neuron.FlexSN) else m.init_state(xe[0])
        for leaf in jax.tree_util.tree_leaves(s0):
            assert spec_of(leaf) == ("data",), (name, jax.typeof(leaf))
    close(out, ref, f"{name}/{backend}: set_mesh, explicit axes")
    out = jax.jit(f)(xe, we, p)   # the same Explicit-typed arrays, outside set_mesh
    close(out, ref, f"{name}/{backend}: explicit-typed inputs outside set_mesh")
    assert spec_of(out[0]) == (None, "data"), jax.typeof(out[0])
    # inside the user's own shard_map (check_vma=True by default)
    g = jax.shard_map(lambda x, w: f(x, w, p), mesh=MESH, in_specs=P(None, "data"),
                      out_specs=(P(None, "data"), P(None, "data") if not p else
                                 (P(None, "data"), P())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # interpret mode inside shard_map uses lax.scan
        out = jax.jit(g)(X, W_OUT)
    close(out, ref, f"{name}/{backend}: inside shard_map")


for _name, (_e, _p, _backends) in CASES.items():
    for _backend in _backends:
        check(f"neuron {_name} {_backend}")(lambda n=_name, b=_backend: run_case(n, b))


@check("init_state keeps the input's sharding (explicit axes)")
def _():
    lif = neuron.LIFNode()
    with jax.set_mesh(EMESH):
        x = jax.device_put(jnp.ones((B, F)), P("data"))
        assert spec_of(lif.init_state(x)["v"]) == ("data",)


@check("compiled HLO: no collective for the input gradient; one all-reduce for a shared tau")
def _():
    xs = jax.device_put(X, NamedSharding(MESH, P(None, "data")))
    for backend in ("scan", "pallas"):
        lif = neuron.LIFNode(backend=backend)
        loss = lambda x, tau: jnp.sum(pure(lif, x, {"tau": tau}) * W_OUT)
        gx = jax.jit(jax.grad(loss)).lower(xs, 2.0).compile().as_text()
        assert not any(collectives(gx).values()), (backend, collectives(gx))
        gt = jax.jit(jax.grad(loss, argnums=1)).lower(xs, jnp.asarray(2.0)).compile().as_text()
        c = collectives(gt)
        assert c["all-reduce"] >= 1 and not (c["all-gather"] or c["collective-permute"]
                                             or c["all-to-all"]), (backend, c)
        # (the values of these gradients are compared with unsharded ones in 'neuron ...')
        if backend == "pallas":
            with jax.set_mesh(EMESH):   # explicit axes: the kernels inside shard_map
                xe = jax.device_put(X, P(None, "data"))
                gx = jax.jit(jax.grad(loss)).lower(xe, 2.0).compile().as_text()
                assert not any(collectives(gx).values()), ("explicit", collectives(gx))


@check("Mosaic tail block per shard: a shared parameter's gradient summed over the shards")
def _():
    # A launch on 130 neurons per shard: one block of 128 and a tail block overlapping it (the
    # Mosaic layout), whose per-program partial sums ('block' outputs) take the overlap path;
    # the sum must also run over the shards. The kernel is a jnp stand-in with the same
    # layout (Mosaic's interpreter, on host callbacks, runs unpartitioned).
    import types
    from snnjax.kernels import sharding as ksh

    def run_loop(spec, seq_in, row_in, *, T, Np, block_n, cfg):
        x = seq_in[0]
        nb = -(-Np // block_n)
        parts = []
        for b in range(nb):
            start = min(b * block_n, Np - block_n)
            part = jnp.sum(x[:, start:start + block_n], axis=0)
            lane = jnp.arange(block_n)
            parts.append(jnp.where(lane >= b * block_n - start, part, 0.0))
        return [2.0 * x], [jnp.stack(parts)]
    spec = types.SimpleNamespace(row_in_kinds=(), seq_out=((jnp.float32, True),),
                                 row_out=((jnp.float32, "block"),))
    cfg = types.SimpleNamespace(backend="mosaic", interpret=False)
    launch = ksh.launcher(run_loop, T=3, block_n=128, cfg=cfg, padded_size=lambda n, b: max(n, b))
    f = jax.jit(lambda x: launch(spec, [x], []))
    x = jax.random.normal(KEY, (3, 4 * 130))
    (seq,), (total,) = f(jax.device_put(x, NamedSharding(MESH, P(None, "data"))))
    close(seq, 2.0 * x, "sequence output")
    close(jnp.sum(total), jnp.sum(x), "partial sums over programs and shards", rtol=1e-5)
    (seq1,), (total1,) = f(x)   # unsharded input: the same
    close(jnp.sum(total1), jnp.sum(x), "unsharded", rtol=1e-5)

    # the interpreted Mosaic kernels themselves on several devices (they run whole)
    plif = neuron.ParametricLIFNode(step_mode="m", backend="mosaic")

    def grads(x, w):
        loss = lambda x, w: jnp.sum(plif.multi_step(plif.init_state(x[0]), x, {"w": w})[1]
                                    * jnp.cos(x))
        return jax.grad(loss, argnums=(0, 1))(x, w)
    xm = jax.random.normal(KEY, (3, 8, 65)) + 0.6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = jax.jit(grads)(xm, jnp.asarray(-0.3))
        plif.backend = "scan"
        scan = jax.jit(grads)(xm, jnp.asarray(-0.3))
        plif.backend = "mosaic"
        out = jax.jit(grads)(jax.device_put(xm, NamedSharding(MESH, P(None, "data"))),
                             jnp.asarray(-0.3))
    close(ref, scan, "PLIF mosaic (interpret) vs scan, 4 devices")
    close(out, scan, "PLIF mosaic (interpret), sharded input")


# --- bad input: coupled axes, uneven splits, other state shardings, random draws --------------

@check("time axis sharded: correct (gathered) on scan and kernels, output keeps the sharding")
def _():
    x = jax.random.normal(KEY, (8, 4, 6)) + 0.6
    for backend in ("scan", "pallas"):
        lif = neuron.LIFNode(backend=backend)
        f = jax.jit(lambda x: pure(lif, x, None))
        ref = f(x)
        out = f(jax.device_put(x, NamedSharding(MESH, P("data"))))
        close(out, ref, f"time-sharded {backend}")
        # explicit axes: the neuron reads x_seq[0] (the state's shape), which JAX refuses on a
        # sharded time axis with an error naming the axis and the shapes
        with jax.set_mesh(EMESH):
            try:
                f(jax.device_put(x, P("data")))
            except Exception as e:   # jax ShardingTypeError
                assert "8@data" in str(e) and "(1, 4, 6)" in str(e), e
            else:
                raise AssertionError("time-sharded explicit input ran")
        # the engine itself gathers the time axis and gives the sequence back time-sharded
        from snnjax import kernels
        step = lif.bound_step()
        ref = kernels.multi_step(step, {"v": jnp.zeros((4, 6))}, x, lif.params(), backend=backend)
        with jax.set_mesh(EMESH):
            out = jax.jit(lambda v, x: kernels.multi_step(step, {"v": v}, x, lif.params(),
                                                          backend=backend))(
                jax.device_put(jnp.zeros((4, 6)), P()), jax.device_put(x, P("data")))
            assert spec_of(out[1]) == ("data",), jax.typeof(out[1])
        close(out, ref, f"time-sharded explicit {backend}")


@check("uneven split of the neuron axis (6 rows on 4 devices, Auto): correct")
def _():
    x = jax.random.normal(KEY, (3, 6, 5)) + 0.6
    for backend in ("pallas",):   # lax.scan: XLA's partitioning
        lif = neuron.LIFNode(backend=backend)
        loss = lambda x: jnp.sum(pure(lif, x, None) ** 2 * x)
        sh = NamedSharding(MESH, P(None, "data"))
        try:   # device_put refuses it (JAX: IndivisibleError naming the axis and the shape)
            jax.device_put(x, sh)
        except ValueError as e:
            assert "axis 1 is partitioned 4 times, but the dimension size is 6" in str(e), e
        else:
            raise AssertionError("uneven device_put accepted")
        # inside jit a sharding constraint may split unevenly (XLA pads): still correct
        f = jax.jit(jax.value_and_grad(lambda x: loss(jax.lax.with_sharding_constraint(x, sh))))
        close(f(x), jax.jit(jax.value_and_grad(loss))(x), f"uneven {backend}")


@check("state sharded differently from the input (explicit axes): resharded, correct")
def _():
    x = jax.random.normal(KEY, (3, 8, 8)) + 0.6
    v0 = jax.random.uniform(KEY, (8, 8))
    for backend in ("scan", "pallas"):
        lif = neuron.LIFNode(backend=backend)
        f = jax.jit(lambda v, x: lif.multi_step({"v": v}, x))
        ref = f(v0, x)
        with jax.set_mesh(EMESH):
            out = f(jax.device_put(v0, P(None, "data")), jax.device_put(x, P(None, "data")))
            assert spec_of(out[1]) == (None, "data"), jax.typeof(out[1])
        close(out, ref, f"state sharding {backend}")


@check("PSN / SlidingPSN with the time axis sharded: correct (XLA's collectives)")
def _():
    x = jax.random.normal(KEY, (4, 8, 3))
    for cls, kw in ((neuron.PSN, dict(T=4, rngs=nnx.Rngs(0))), (neuron.SlidingPSN, dict(k=2))):
        m = cls(**kw)
        f = jax.jit(jax.value_and_grad(lambda x: jnp.sum(m.multi_step({}, x)[1] * x)))
        ref = f(x)
        close(f(jax.device_put(x, NamedSharding(MESH, P("data")))), ref, cls.__name__)
        with jax.set_mesh(EMESH):
            out = f(jax.device_put(x, P("data")))
        close(out, ref, cls.__name__ + " explicit")


@check("MPBN with the batch axis sharded: global batch statistics (jit, explicit, shard_map)")
def _():
    m = neuron.MPBNLIFNode(out_features=3)
    x = jax.random.normal(KEY, (3, 8, 3)) + 0.5

    def f(x):
        state, out = m.multi_step(m.init_state(x[0]), x)
        return out, state["stats"]["running_mean"], state["stats"]["running_var"]
    ref = jax.jit(f)(x)
    close(jax.jit(f)(jax.device_put(x, NamedSharding(MESH, P(None, "data")))), ref, "MPBN jit")
    with jax.set_mesh(EMESH):
        out = jax.jit(f)(jax.device_put(x, P(None, "data")))
    close(out, ref, "MPBN explicit")
    g = jax.shard_map(f, mesh=MESH, in_specs=P(None, "data"), out_specs=(P(None, "data"), P(), P()))
    close(jax.jit(g)(x), ref, "MPBN inside shard_map")


@check("ILC with the neuron axis sharded: correct (XLA's collectives)")
def _():
    m = neuron.ILCLIFNode(act_dim=2, dec_pop_dim=4, rngs=nnx.Rngs(0))
    x = jax.random.normal(KEY, (3, 2, 8)) + 0.5
    f = jax.jit(lambda x: pure(m, x, None))
    ref = f(x)
    close(f(jax.device_put(x, NamedSharding(MESH, P(None, None, "data")))), ref, "ILC")
    with jax.set_mesh(EMESH):   # the connection's reshape is untypable: run gathered
        out = f(jax.device_put(x, P(None, None, "data")))
        assert spec_of(out) == (None, None, "data"), jax.typeof(out)
    close(out, ref, "ILC explicit")
    g = jax.shard_map(lambda x: pure(m, x, None), mesh=MESH, in_specs=P(None, None, "data"),
                      out_specs=P(None, None, "data"))
    try:   # inside shard_map the neuron sees 2 of its 8 neurons: a clear error
        jax.jit(g)(x)
    except ValueError as e:
        assert "act_dim * dec_pop_dim = 8" in str(e) and "(2, 2)" in str(e), e
    else:
        raise AssertionError("ILC ran on a quarter of its neurons")


@check("noisy neuron: the noise drawn under sharding equals the unsharded draw")
def _():
    def draw():
        m = neuron.NoisyCUBALIFNode(num_node=8, T=3, rngs=nnx.Rngs(3))
        m.reset_noise(2)
        return m.noise.eps.get_value()     # [2, 3, 2 * 8]: the neuron axis last
    ref = jax.jit(draw)()
    out = jax.jit(draw, out_shardings=NamedSharding(MESH, P(None, None, "data")))()
    assert spec_of(out) == (None, None, "data"), out.sharding
    close(out, ref, "noisy neuron's noise", rtol=0, atol=0)
    noise = jax.jit(lambda k: jax.random.normal(k, (8, 4, 8)),
                    out_shardings=NamedSharding(MESH, P(None, "data")))(KEY)
    close(noise, jax.random.normal(KEY, (8, 4, 8)), "sharded draw", rtol=0, atol=0)


# --- data-parallel training --------------------------------------------------------------------

@check("data-parallel and FSDP training steps match the single-device step")
def _():
    import optax
    import data_parallel as dp
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=8).astype(np.int32)

    def one_step(n, fsdp):
        mesh = dp.make_mesh(n)
        model = dp.SpikingCNN(T=2, channels=4, rngs=nnx.Rngs(0))
        # SGD: Adam's first step is lr * sign(g), which amplifies the rounding of the ~0
        # gradients of the conv biases before BatchNorm
        opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        dp.place((model, opt), mesh, fsdp)
        xb, yb = jax.device_put((x, y), NamedSharding(mesh, P("data")))
        step = dp.make_train_step()
        return step(model, opt, xb, yb), nnx.state(model, nnx.Param)
    ref_loss, ref_params = one_step(1, False)
    for fsdp in (False, True):
        loss, params = one_step(4, fsdp)
        close(loss, ref_loss, f"loss fsdp={fsdp}", rtol=1e-5)
        close(params, ref_params, f"params fsdp={fsdp}", rtol=1e-4, atol=1e-5)
    if fsdp:
        kernel = params["fc"]["kernel"].get_value()
        assert kernel.sharding.spec[0] == "data", kernel.sharding


if __name__ == "__main__":
    print("done", flush=True)
