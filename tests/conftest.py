"""Test-session set-up, applied before JAX is imported.

The suite compiles a few thousand small XLA programs on the CPU, and most of its time is LLVM's
code generation for them. The tests ask for exact IEEE arithmetic, not fast code, so they run
with XLA's CPU backend optimisation level 0 (no fast-math either way: XLA's CPU default leaves
it off); measured on the LIF/IF golden subset, 245 s of CPU time became 140 s. Set ``SNNJAX_TEST_XLA_OPT=1`` to test the optimised
code generation instead.
"""
import os
from importlib import metadata


def _jaxlib_version() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
    except Exception:
        return (0, 0)


if os.environ.get("SNNJAX_TEST_XLA_OPT", "0") != "1":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in _flags:
        _flags += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        # XLA's classic CPU emitters compile the interpret-mode kernels' large loop bodies in
        # about half the time of the fusion emitters (tests/test_kernel_all_neurons.py: 78 s ->
        # 53 s on JAX 0.10.2); jaxlib 0.11.2 and 0.12 no longer have the flag (an unknown flag
        # aborts the process)
        if _jaxlib_version() < (0, 11):
            _flags += " --xla_cpu_use_fusion_emitters=false"
        os.environ["XLA_FLAGS"] = _flags.strip()


def pytest_collection_modifyitems(config, items):
    """``SNNJAX_TEST_FRACTION=k``: keep every test function, but only every k-th case of each
    parametrised one (CI's second JAX version runs this sample to stay in its time budget)."""
    k = int(os.environ.get("SNNJAX_TEST_FRACTION", "1") or 1)
    if k <= 1:
        return
    seen: dict = {}
    keep, drop = [], []
    for item in items:
        base = item.nodeid.split("[")[0]
        i = seen[base] = seen.get(base, -1) + 1
        (keep if i % k == 0 else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
