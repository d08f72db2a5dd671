"""Helpers to test snnjax against the SpikingJelly 2.0.0 reference data in ``tests/golden``.

File format: ``tests/golden/README.md``. Typical use::

    case = load_case("LIFNode__default")
    with precision(case):
        module = neuron.LIFNode(step_mode="m", **case.kwargs)
        check_module_case(module, case)
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


def check_module_case(module: Any, case: Case, *, check_single_step: bool = True,
                      out_kind: str | None = None) -> None:
    """Full check of a single-output ``MemoryModule``-style neuron against one golden case.

    Multi-step (jitted) outputs, every ``<state>_seq`` / ``<state>_final`` in the file, gradients
    w.r.t. ``x``, the ``<state>_init`` arrays and the ``param_*`` values; then the single-step
    path (``module.step`` T times) and the stateful call ``module(x)`` for equality.
    """
    x = jnp.asarray(case["x"])
    state0 = initial_state(module, case, x[0])
    params = learnable_params(case)
    out_kind = out_kind or ("binary" if is_binary(case["out"]) else "value")

    @jax.jit
    def run(primals):
        seq, out = module.multi_step(primals["state"], primals["x"], primals["params"],
                                     return_state_seq=True)
        return {"out": out, "seq": seq}

    primals = {"x": x, "state": state0, "params": params}
    res = run(primals)
    assert res["out"].dtype == x.dtype, f"{case.name}: output dtype {res['out'].dtype} != {x.dtype}"
    assert_close(res["out"], case["out"], case, out_kind, "out")
    for name, seq in res["seq"].items():
        if f"{name}_seq" in case:
            assert_close(seq, case[f"{name}_seq"], case, "value", f"{name}_seq")
        if f"{name}_final" in case:
            assert_close(seq[-1], case[f"{name}_final"], case, "value", f"{name}_final")

    if "gout" in case:
        grad_keys = {"x": "grad_x"}
        for name in state0:
            if f"grad_{name}_init" in case:
                grad_keys[("state", name)] = f"grad_{name}_init"
        for name in params:
            if f"grad_param_{name}" in case:
                grad_keys[("params", name)] = f"grad_param_{name}"
        vjp_check(lambda p: {"out": run(p)["out"]}, primals, {"out": case["gout"]}, case, grad_keys)

    if check_single_step:
        step = jax.jit(module.step)
        state, outs = state0, []
        for t in range(x.shape[0]):
            state, o = step(state, x[t], params)
            outs.append(o)
        assert_close(jnp.stack(outs), case["out"], case, out_kind, "out (single-step)")
        for name, value in state.items():
            if f"{name}_final" in case:
                assert_close(value, case[f"{name}_final"], case, "value", f"{name}_final (single-step)")
