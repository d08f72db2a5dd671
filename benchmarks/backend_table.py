"""Which kernel backend runs each neuron (and each surrogate's primitive) under
``backend='mosaic'`` on this machine's JAX: ``mosaic``, ``pallas`` (the Triton fallback, with the
primitive Mosaic lacks) or ``scan``. Prints the markdown table of ``docs/backends.md``.

    python benchmarks/backend_table.py
"""
from __future__ import annotations

import inspect
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from snnjax import kernels, neuron, surrogate  # noqa: E402
from snnjax.kernels import Config, KernelLoweringError  # noqa: E402


def which(step, state0, xs, params) -> str:
    for name, backend in (("mosaic", "mosaic"), ("pallas", "triton")):
        try:
            kernels.check_step(step, state0, xs, params, Config(backend=backend, interpret=False))
            return name
        except KernelLoweringError as e:
            if name == "mosaic":
                reason = str(e).split("'")[1] if "'" in str(e) else str(e)[:60]
    return f"scan ({reason})"


def main() -> None:
    import test_kernel_all_neurons as kan
    x = jnp.ones((3, 256), jnp.float32)
    print(f"JAX {jax.__version__}\n\n| neuron | backend='mosaic' runs |\n|---|---|")
    for name in kan.ELEMENTWISE:
        m = kan.build(name, "scan")
        r = which(m.bound_step(), m.init_state(x[0]), x, m.params())
        if r == "pallas":
            try:
                kernels.check_step(m.bound_step(), m.init_state(x[0]), x, m.params(),
                                   Config(backend="mosaic", interpret=False))
            except KernelLoweringError as e:
                r = f"pallas ({str(e).split(chr(39))[1]})"
        print(f"| {name} | {r} |")
    for name in kan.NOT_ELEMENTWISE:
        print(f"| {name} | scan ({kan.NOT_ELEMENTWISE[name]}) |")
    print("\n| surrogate (LIFNode, spiking=True / False) | backend='mosaic' runs |\n|---|---|")
    for n in sorted(dir(surrogate)):
        cls = getattr(surrogate, n)
        if not (inspect.isclass(cls) and issubclass(cls, surrogate.SurrogateFunction)) \
                or cls is surrogate.SurrogateFunction:
            continue
        res = []
        for spiking in (True, False):
            try:
                m = neuron.LIFNode(surrogate_function=cls(spiking=spiking), step_mode="m")
                step = m.bound_step()
                res.append(which(step, m.init_state(x[0]), x, m.params()))
            except Exception as e:  # constructor needs arguments, or no primitive
                res.append(f"- ({type(e).__name__})")
        print(f"| {n} | {res[0]} / {res[1]} |")


if __name__ == "__main__":
    main()
