"""Sharded kernel calls on a GPU, compiled (the CPU tests run the kernels in interpret mode).

LIF and PLIF (with a per-neuron ``tau`` / the learnable ``w``) on the Triton (``pallas``) and
Mosaic backends, values and gradients (input and parameters) compared with the unsharded scan
path, in four contexts over a mesh of the first device: plain ``jax.jit``, ``jax.jit`` on
``NamedSharding`` inputs (the ``custom_partitioning`` launches), ``jax.set_mesh`` with Explicit
axes, and inside a user's ``jax.shard_map`` (``check_vma=True``). Prints ``ok`` / ``FAIL`` per
case and ``fails N``. Usage: ``python tools/gpu_sharding_check.py [contexts, comma-separated]``.
"""
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
sys.path.insert(0, __file__.rsplit("/tools/", 1)[0])
from snnjax import neuron  # noqa: E402

devs = jax.devices()
MESH = jax.sharding.Mesh(np.array(devs[:1]), ("data",))
EMESH = jax.make_mesh((1,), ("data",), devices=devs[:1])
T, B, F = 16, 1024, 96
k1, k2 = jax.random.split(jax.random.key(0))
X = jax.random.normal(k1, (T, B, F)) * 0.8 + 0.6
W = jax.random.normal(k2, (T, B, F))

def make(name, backend):
    if name == "LIF":
        return neuron.LIFNode(step_mode="m", backend=backend), {"tau": jnp.linspace(1.5, 4.0, F)}
    return neuron.ParametricLIFNode(step_mode="m", backend=backend), {"w": jnp.asarray(-0.3)}

def fg(m):
    def pure(x, p):
        return m.multi_step(m.init_state(x[0]), x, p)[1]
    def loss(x, w, p):
        return jnp.sum(pure(x, p) * w)
    def f(x, w, p):
        return pure(x, p), jax.grad(loss, argnums=(0, 2))(x, w, p)
    return f

def close(a, b, what):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5, err_msg=what)

CTXS = sys.argv[1].split(",") if len(sys.argv) > 1 else ("jit", "jit-namedsharding", "set_mesh", "shard_map")
fails = 0
for name in ("LIF", "PLIF"):
    ref_m, p = make(name, "scan")
    ref = jax.jit(fg(ref_m))(X, W, p)
    for backend in ("pallas", "mosaic"):
        m, p = make(name, backend)
        f = fg(m)
        for ctx in CTXS:
            try:
                with warnings.catch_warnings(record=True) as wl:
                    warnings.simplefilter("always")
                    if ctx == "jit":
                        fn = jax.jit(f); args = (X, W, p)
                        out = fn(*args)
                    elif ctx == "jit-namedsharding":
                        xs, ws = jax.device_put((X, W), NamedSharding(MESH, P("data")))
                        fn = jax.jit(f); args = (xs, ws, p); out = fn(*args)
                    elif ctx == "set_mesh":
                        with jax.set_mesh(EMESH):
                            xe, we = jax.device_put((X, W), P(None, "data"))
                            fn = jax.jit(f); args = (xe, we, p); out = fn(*args)
                            hlo = fn.lower(*args).as_text()
                    else:
                        g = jax.shard_map(lambda x, w: f(x, w, p), mesh=MESH, in_specs=P(None, "data"),
                                          out_specs=(P(None, "data"), (P(None, "data"), P())))
                        fn = jax.jit(g); args = (X, W); out = fn(*args)
                    txt = fn.lower(*args).as_text()
                kern = "triton" in txt.lower() or "mosaic" in txt.lower() or "custom_call" in txt
                close(out, ref, f"{name}/{backend}/{ctx}")
                print(f"ok {name} {backend} {ctx} kernel_in_hlo={kern} warnings={[str(w.message)[:80] for w in wl]}", flush=True)
            except Exception as e:
                fails += 1
                print(f"FAIL {name} {backend} {ctx}: {type(e).__name__}: {str(e)[:400]}", flush=True)
print("fails", fails)
sys.exit(1 if fails else 0)
