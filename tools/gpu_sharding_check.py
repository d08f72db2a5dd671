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

DEVICES = jax.devices()[:1]
MESH = jax.sharding.Mesh(np.array(DEVICES), ("data",))                 # Auto axes
EMESH = jax.make_mesh((1,), ("data",), devices=DEVICES)               # Explicit axes
CONTEXTS = ("jit", "jit-namedsharding", "set_mesh", "shard_map")
T, B, F = 16, 1024, 96
_k1, _k2 = jax.random.split(jax.random.key(0))
X = jax.random.normal(_k1, (T, B, F)) * 0.8 + 0.6
W = jax.random.normal(_k2, (T, B, F))


def make(name: str, backend: str):
    """The neuron and its traced parameters (a per-neuron ``tau``; PLIF's learnable ``w``)."""
    if name == "LIF":
        return neuron.LIFNode(step_mode="m", backend=backend), {"tau": jnp.linspace(1.5, 4.0, F)}
    return neuron.ParametricLIFNode(step_mode="m", backend=backend), {"w": jnp.asarray(-0.3)}


def values_and_grads(m):
    """``f(x, w, p) -> (spikes, (dL/dx, dL/dp))`` with ``L = sum(spikes * w)``."""
    def spikes(x, p):
        return m.multi_step(m.init_state(x[0]), x, p)[1]

    def loss(x, w, p):
        return jnp.sum(spikes(x, p) * w)

    return lambda x, w, p: (spikes(x, p), jax.grad(loss, argnums=(0, 2))(x, w, p))


def run(ctx: str, f, p):
    """``f`` compiled and called in context ``ctx``: ``(result, lowered text)``."""
    if ctx == "jit":
        fn, args = jax.jit(f), (X, W, p)
    elif ctx == "jit-namedsharding":
        fn, args = jax.jit(f), (*jax.device_put((X, W), NamedSharding(MESH, P("data"))), p)
    elif ctx == "set_mesh":
        with jax.set_mesh(EMESH):
            fn, args = jax.jit(f), (*jax.device_put((X, W), P(None, "data")), p)
            return fn(*args), fn.lower(*args).as_text()
    else:   # a user's own shard_map, check_vma=True (the default)
        fn = jax.jit(jax.shard_map(lambda x, w: f(x, w, p), mesh=MESH, in_specs=P(None, "data"),
                                   out_specs=(P(None, "data"), (P(None, "data"), P()))))
        args = (X, W)
    return fn(*args), fn.lower(*args).as_text()


def main() -> int:
    contexts = sys.argv[1].split(",") if len(sys.argv) > 1 else CONTEXTS
    fails = 0
    for name in ("LIF", "PLIF"):
        ref_m, p = make(name, "scan")
        ref = jax.jit(values_and_grads(ref_m))(X, W, p)
        for backend in ("pallas", "mosaic"):
            m, p = make(name, backend)
            f = values_and_grads(m)
            for ctx in contexts:
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        out, text = run(ctx, f, p)
                    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref)):
                        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                                   atol=1e-5, err_msg=f"{name}/{backend}/{ctx}")
                    kernel = "custom_call" in text or "triton" in text.lower()
                    notes = sorted({str(w.message)[:90] for w in caught
                                    if "deprecated" not in str(w.message)})
                    print(f"ok {name} {backend} {ctx} kernel_in_hlo={kernel} warnings={notes}",
                          flush=True)
                except Exception as e:  # noqa: BLE001  (report every case, then fail)
                    fails += 1
                    print(f"FAIL {name} {backend} {ctx}: {type(e).__name__}: {str(e)[:400]}",
                          flush=True)
    print("fails", fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
