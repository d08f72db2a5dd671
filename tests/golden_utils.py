"""Helpers to test snnjax against the SpikingJelly 2.0.0 reference data in ``tests/golden``.

File format: ``tests/golden/README.md``. Typical use::

    case = load_case("LIFNode__default")
    with precision(case):
        module = neuron.LIFNode(step_mode="m", **case.kwargs)
        golden_checks.check_pure(module, case)   # see tests/golden_checks.py
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from snnjax import surrogate as sg

GOLDEN = Path(__file__).parent / "golden"

# Suggested tolerances of the golden README.
TOL = {
    "float64": {"value": 1e-10, "grad": 1e-9},
    "float32": {"value": 1e-5, "grad": 1e-5},
}

CALLABLES = {
    "torch.relu": jax.nn.relu,
    "torch.nn.functional.relu": jax.nn.relu,
    "torch.sigmoid": jax.nn.sigmoid,
    "torch.tanh": jnp.tanh,
    "torch.nn.functional.leaky_relu": jax.nn.leaky_relu,
}


@dataclass
class Case:
    name: str
    meta: dict
    arrays: dict

    @property
    def dtype(self) -> str:
        return self.meta["dtype"]

    @property
    def kwargs(self) -> dict:
        """Constructor kwargs with surrogate dicts and torch callables translated."""
        return {k: convert_value(v) for k, v in self.meta["kwargs"].items()}

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.arrays if k.startswith(prefix))


def convert_value(v: Any) -> Any:
    if isinstance(v, dict) and "name" in v:
        return sg.get_surrogate(v)
    if isinstance(v, str) and v in CALLABLES:
        return CALLABLES[v]
    return v


def case_names(prefix: str) -> list[str]:
    """Names of the golden files of one class (``'LIFNode'`` -> ``['LIFNode__5d', ...]``)."""
    return sorted(p.stem for p in GOLDEN.glob(f"{prefix}__*.npz"))


def load_case(name: str) -> Case:
    with np.load(GOLDEN / f"{name}.npz") as d:
        arrays = {k: d[k] for k in d.files if k != "meta"}
        meta = json.loads(str(d["meta"]))
    return Case(name, meta, arrays)


@contextlib.contextmanager
def precision(case_or_dtype: Case | str):
    """Enable 64-bit floats for a float64 case only inside the ``with`` block."""
    dtype = case_or_dtype.dtype if isinstance(case_or_dtype, Case) else case_or_dtype
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", dtype == "float64")
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def assert_close(actual: Any, expected: np.ndarray, case: Case, kind: str, what: str) -> None:
    """``kind``: ``'binary'`` (exactly equal), ``'value'`` or ``'grad'`` (README tolerances)."""
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{case.name}: {what} shape {actual.shape} != {expected.shape}"
    if kind == "binary":
        np.testing.assert_array_equal(actual, expected, err_msg=f"{case.name}: {what}")
        return
    tol = TOL[case.dtype][kind]
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=f"{case.name}: {what}")


def is_binary(a: np.ndarray) -> bool:
    return bool(np.all((a == 0) | (a == 1)))


def vjp_check(fn: Callable, primals: dict, cotangents: dict, case: Case,
              grad_keys: dict) -> dict:
    """Check gradients of ``L = sum(out_k * gout_k)``.

    ``fn(primals) -> dict of outputs`` keyed by golden output key (``'out'``, ``'out_h'`` ...);
    ``cotangents`` maps the same keys to the golden ``gout`` arrays; ``grad_keys`` maps a path in
    ``primals`` (``'x'``, ``('state', 'v')``, ``('params', 'w')``) to its golden ``grad_*`` key.
    Returns the computed gradient dict.
    """
    outs, pullback = jax.vjp(fn, primals)
    ct = {k: jnp.asarray(cotangents[k], dtype=outs[k].dtype) if k in cotangents
          else jnp.zeros_like(outs[k]) for k in outs}
    (grads,) = pullback(ct)
    for path, key in grad_keys.items():
        g = grads
        for p in (path if isinstance(path, tuple) else (path,)):
            g = g[p]
        assert_close(g, case[key], case, "grad", key)
    return grads


def initial_state(module: Any, case: Case, x0: jax.Array) -> dict:
    """The module's default state, overridden by ``<name>_init`` arrays present in the file."""
    state = module.init_state(x0)
    for name in list(state):
        if f"{name}_init" in case:
            state[name] = jnp.asarray(case[f"{name}_init"])
    return state


def learnable_params(case: Case) -> dict:
    """``param_<name>`` arrays of the file, keyed by ``<name>``."""
    return {k[len("param_"):]: jnp.asarray(case[k]) for k in case.keys("param_")}


