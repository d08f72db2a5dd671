"""Golden checkers, one per neuron family, each ``check(case, backend)``.

Every checker reproduces (with the same assertions and the README tolerances of
``golden_utils``) the golden test that used to live in the family's test file, with the module
built for ``backend`` (``'scan'`` or ``'pallas'``; ignored by classes that have no such argument).
``tests/registry.py`` maps each class of ``snnjax.neuron`` to its checker; ``tests/test_golden.py``
runs them.

The checkers compute a case's jitted forward pass and its gradients in *one* compiled function
(:func:`forward_and_vjp`): the forward values come from the plain (non-differentiated) forward,
the gradients from ``jax.vjp`` of the same function; one compilation instead of two keeps the
whole golden suite within its CI time budget.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import kernels, neuron, surrogate
from snnjax.neuron import AdaptBaseNode
from golden_utils import (assert_close, initial_state, is_binary, learnable_params,
                          precision)


# --- how much to check ------------------------------------------------------------------------

_FULL_API = [True]


@contextlib.contextmanager
def api_checks(full: bool):
    """``full=False``: skip the pure single-step loop and run the stateful call in one step mode
    only (the reference-data checks of the pure multi-step path stay)."""
    _FULL_API.append(full)
    try:
        yield
    finally:
        _FULL_API.pop()


def full_api() -> bool:
    return _FULL_API[-1]


# --- construction --------------------------------------------------------------------------------

def accepts(cls: type, name: str) -> bool:
    """Whether ``cls(...)`` takes the keyword ``name`` (directly or through ``**kwargs``)."""
    params = inspect.signature(cls.__init__).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def construct(cls: type, backend: str | None, kwargs: dict) -> Any:
    """``cls(**kwargs)``, with ``backend=`` added when the class has that argument."""
    kwargs = dict(kwargs)
    if backend is not None and accepts(cls, "backend"):
        kwargs["backend"] = backend
    return cls(**kwargs)


def golden_module(case, backend, cls=None, **extra):
    """The module of a case: the file's constructor kwargs plus ``extra``."""
    cls = cls or getattr(neuron, case.meta["class"])
    return construct(cls, backend, {**case.kwargs, **extra})


def train_flag(case) -> dict:
    """``deterministic`` from the case's train/eval mode (CLIF, OTTT, SLTT)."""
    return {"deterministic": not case.meta["train_mode"]}


def rngs(seed: int) -> Callable:
    return lambda case: {"rngs": nnx.Rngs(seed)}


# --- shared pieces -------------------------------------------------------------------------------

def default_kind(case) -> str:
    return "binary" if is_binary(case["out"]) else "value"


def forward_and_vjp(fn: Callable, primals: Any, cotangents: dict) -> tuple[dict, Any]:
    """``fn(primals) -> dict of outputs`` and the gradient of ``L = sum(out_k * ct_k)`` over the
    keys of ``cotangents``, in one jitted function. Returns ``(outputs, grads)``; ``grads`` is
    ``None`` without cotangents."""
    keys = sorted(cotangents)

    @jax.jit
    def run(p, ct):
        res = fn(p)
        if not keys:
            return res, None
        _, pullback = jax.vjp(lambda q: {k: fn(q)[k] for k in keys}, p)
        (grads,) = pullback({k: ct[k].astype(res[k].dtype) for k in keys})
        return res, grads

    return run(primals, {k: jnp.asarray(v) for k, v in cotangents.items()})


def check_grads(grads: Any, case, grad_keys: dict) -> None:
    """``grad_keys``: a path in the primals (``'x'``, ``('params', 'w')``) -> its golden
    ``grad_*`` key."""
    for path, key in grad_keys.items():
        g = grads
        for p in (path if isinstance(path, tuple) else (path,)):
            g = g[p]
        assert_close(g, case[key], case, "grad", key)


def resolve(module: Any, name: str) -> Any:
    """The variable a golden ``param_<name>`` refers to: ``module.<name>``, or a nested one
    (``conn_weight`` -> ``module.conn.weight``, ``vbn_bias`` -> ``module.vbn.bias``)."""
    if hasattr(module, name):
        return getattr(module, name)
    for i, ch in enumerate(name):
        if ch == "_" and i and getattr(module, name[:i], None) is not None:
            try:
                return resolve(getattr(module, name[:i]), name[i + 1:])
            except AttributeError:
                pass
    raise AttributeError(f"{type(module).__name__} has no variable for param_{name}")


def load_params(module: Any, case) -> None:
    """Put the file's ``param_*`` values into the module's variables (SpikingJelly's way)."""
    for name, value in learnable_params(case).items():
        resolve(module, name).set_value(value)


def set_initial_state(module: Any, case, x0) -> None:
    """Assign a stored non-default initial state the SpikingJelly way (``node.v = v0``)."""
    st = module.init_state(x0)
    if not any(f"{k}_init" in case for k in st):
        return
    st.update({k: jnp.asarray(case[f"{k}_init"]) for k in st if f"{k}_init" in case})
    for k, value in st.items():
        setattr(module, k, value)


def check_pure(module, case, *, single_step: bool = True, out_kind: str | None = None,
               state0: Any = None) -> None:
    """What ``golden_utils.check_module_case`` checks: multi-step (jitted) outputs and dtype,
    every ``<state>_seq`` / ``<state>_final`` of the file, gradients w.r.t. ``x``, the
    ``<state>_init`` arrays and the ``param_*`` values; then ``module.step`` T times (jitted)."""
    x = jnp.asarray(case["x"])
    state0 = initial_state(module, case, x[0]) if state0 is None else state0
    params = learnable_params(case)
    out_kind = out_kind or default_kind(case)

    def run(p):
        seq, out = module.multi_step(p["state"], p["x"], p["params"], return_state_seq=True)
        return {"out": out, "seq": seq}

    primals = {"x": x, "state": state0, "params": params}
    res, grads = forward_and_vjp(run, primals, {"out": case["gout"]} if "gout" in case else {})
    assert res["out"].dtype == x.dtype, f"{case.name}: output dtype {res['out'].dtype} != {x.dtype}"
    assert_close(res["out"], case["out"], case, out_kind, "out")
    for name, seq in res["seq"].items():
        if f"{name}_seq" in case:
            assert_close(seq, case[f"{name}_seq"], case, "value", f"{name}_seq")
        if f"{name}_final" in case:
            assert_close(seq[-1], case[f"{name}_final"], case, "value", f"{name}_final")
    if "gout" in case:
        grad_keys = {"x": "grad_x"}
        grad_keys.update({("state", k): f"grad_{k}_init" for k in state0
                          if f"grad_{k}_init" in case})
        grad_keys.update({("params", k): f"grad_param_{k}" for k in params
                          if f"grad_param_{k}" in case})
        check_grads(grads, case, grad_keys)

    if single_step and full_api():
        step = jax.jit(module.step)
        state, outs = state0, []
        for t in range(x.shape[0]):
            state, o = step(state, x[t], params)
            outs.append(o)
        assert_close(jnp.stack(outs), case["out"], case, out_kind, "out (single-step)")
        for name, value in state.items():
            if f"{name}_final" in case:
                assert_close(value, case[f"{name}_final"], case, "value",
                             f"{name}_final (single-step)")


def stateful_run(m, x, mode: str):
    return m(x) if mode == "m" else jnp.stack([m(x[t]) for t in range(x.shape[0])])


def check_stateful(make: Callable, case, modes: Iterable[str], *, out_kind: str | None = None,
                   record: bool = False) -> None:
    """``module(x)`` in each step mode, with the file's parameters and initial state loaded into
    the module: output, every ``<state>_final`` of the file and (``record``: built with
    ``store_v_seq=True``) the recorded ``v_seq``."""
    x = jnp.asarray(case["x"])
    kind = out_kind or default_kind(case)
    modes = list(modes)
    for mode in (modes if full_api() else modes[-1:]):
        m = make(step_mode=mode, **({"store_v_seq": True} if record else {}))
        load_params(m, case)
        set_initial_state(m, case, x[0])
        out = stateful_run(m, x, mode)
        assert_close(out, case["out"], case, kind, f"out (stateful, {mode})")
        for name in m.init_state(x[0]):
            if f"{name}_final" in case:
                assert_close(getattr(m, name), case[f"{name}_final"], case, "value",
                             f"{name} (stateful, {mode})")
        if record:
            assert_close(m.v_seq, case["v_seq"], case, "value", f"v_seq (stateful, {mode})")


# --- BaseNode-style single-output neurons ---------------------------------------------------------

def check_node(case, backend, *, extra_kwargs: Callable | None = None, single_step: bool = True,
               out_kind: str | None = None, modes: Iterable[str] | None = None,
               record: bool = False, extras: Iterable[Callable] = ()) -> None:
    """Pure API (:func:`check_pure`) then the stateful call in every supported step mode
    (:func:`check_stateful`), then family-specific ``extras(case, backend, make)``.

    Used for IF/LIF/PLIF/Simple* (was ``test_core_golden``), Izhikevich/QIF/EIF
    (``test_adaptive``, ``record=True``), KLIF/CUBALIF/LIAF/GatedLIF (``test_lif_variants``),
    HalfThresholdIF/ILIF/CLIF (``test_extra_neurons``) and the ILC nodes (``test_ilc_noisy``)."""
    cls = getattr(neuron, case.meta["class"])

    def make(**over):
        return golden_module(case, backend, **(extra_kwargs(case) if extra_kwargs else {}), **over)

    modes = tuple(getattr(cls, "supported_step_modes", ("s", "m"))) if modes is None else modes
    modes = tuple(m for m in ("m", "s") if m in modes)
    with precision(case):
        pure = make(**({"step_mode": "m"} if "m" in getattr(cls, "supported_step_modes", "m")
                       and accepts(cls, "step_mode") else {}))
        check_pure(pure, case, single_step=single_step, out_kind=out_kind)
        check_stateful(make, case, modes, out_kind=out_kind, record=record)
        for extra in extras:
            extra(case, backend, make)


def liaf_multistep_quirk(case, backend, make):
    """The reference's multi-step LIAF output (``out_multistep_quirk``) is plain LIF spikes;
    snnjax deliberately returns the analog output (``out``) instead."""
    x = jnp.asarray(case["x"])
    lif = construct(neuron.LIFNode, backend, {"step_mode": "m"})
    assert_close(lif(x), case["out_multistep_quirk"], case, "binary", "LIF spikes")
    out = make(step_mode="m")(x)
    assert_close(out, case["out"], case, "value", "LIAF multi-step")
    assert not np.array_equal(np.asarray(out), case["out_multistep_quirk"])


def clif_state_seqs(case, backend, make):
    """``store_state_seqs=True`` records (v, m) sequences; ``reset()`` clears them."""
    m = make(step_mode="m", store_state_seqs=True)
    m(jnp.asarray(case["x"]))
    v_seq, m_seq = m.state_seqs
    assert_close(v_seq, case["v_seq"], case, "value", "v_seq")
    assert_close(m_seq, case["m_seq"], case, "value", "m_seq")
    m.reset()
    assert m.state_seqs is None


def glif_u_mirrors_v(case, backend, make):
    """Stateful GLIF with the file's parameters: ``u`` mirrors ``v``."""
    m = make()
    load_params(m, case)
    m(jnp.asarray(case["x"]))
    assert_close(m.u, case["v_final"], case, "value", "u")


def glif_deterministic_initial_parameters(case, backend, make):
    """tau, v_threshold, linear_decay, v_subreset, conduct of a fresh module (float32) are the
    logits of the init_* values: equal to the file's parameters."""
    with precision("float32"):
        m = make()
        for k in ("tau", "v_threshold", "linear_decay", "v_subreset", "conduct"):
            got = m.params()[k]
            assert got.dtype == jnp.float32 and got.shape == case[f"param_{k}"].shape, k
            np.testing.assert_allclose(got, case[f"param_{k}"], rtol=1e-6, atol=1e-7,
                                       err_msg=f"{case.name}: initial {k}")


def ilc_feedback_and_stateful(case, backend, make):
    """The effective inputs x + feedback equal the reference's in-place-modified input; the
    stateful call (twice: the state restarts at every call) matches and leaves the caller's array
    alone."""
    m = make()
    load_params(m, case)
    x_np = np.array(case["x"])
    seq, out = jax.jit(lambda x: m.multi_step(m.init_state(x[0]), x,
                                              return_state_seq=True))(jnp.asarray(x_np))
    x_eff = jnp.concatenate([x_np[:1], x_np[1:] + seq["feedback"][:-1]])
    assert_close(x_eff, case["x_after_call"], case, "value", "x_after_call")
    for _ in range(2):
        assert_close(m(x_np), case["out"], case, "binary", "out (stateful)")
    np.testing.assert_array_equal(x_np, case["x"])
    assert_close(m.v, case["v_final"], case, "value", "v (stateful)")
    if "c_final" in case:
        assert_close(m.c, case["c_final"], case, "value", "c (stateful)")


check_core = check_node
check_adaptive = functools.partial(check_node, record=True)
check_lif_variant = check_node
check_liaf = functools.partial(check_node, extras=(liaf_multistep_quirk,))
check_glif = functools.partial(check_node, extra_kwargs=rngs(0), single_step=False, modes=("m",),
                               extras=(glif_u_mirrors_v, glif_deterministic_initial_parameters))
check_extra = functools.partial(check_node, out_kind="binary")
check_clif = functools.partial(check_node, out_kind="binary", extra_kwargs=train_flag,
                               extras=(clif_state_seqs,))
check_ilc = functools.partial(check_node, extra_kwargs=rngs(0), modes=(),
                              extras=(ilc_feedback_and_stateful,))


# --- AdaptBaseNode through a user subclass -----------------------------------------------------

class QuadraticAdaptNode(AdaptBaseNode):
    """A user subclass: only the charge (written here independently) and its extra constants."""

    def __init__(self, tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_reset=0.0, v_rest=-0.1,
                 w_rest=0.0, tau_w=2.0, a=0.0, b=0.0, surrogate_function=None,
                 detach_reset=False, step_mode="s", store_v_seq=False, backend="scan"):
        super().__init__(v_threshold, v_reset, v_rest, w_rest, tau_w, a, b, surrogate_function,
                         detach_reset, step_mode, store_v_seq, backend=backend)
        self.tau, self.v_c, self.a0 = tau, v_c, a0

    def params(self):
        return {**super().params(), "tau": self.tau, "v_c": self.v_c, "a0": self.a0}

    def neuronal_charge(self, v, x, params, w):
        drive = x - w + params["a0"] * (v - params["v_rest"]) * (v - params["v_c"])
        return v + drive / params["tau"]


def check_adapt_subclass(case, backend):
    """AdaptBaseNode's adaptation, spike jump, reset and initial w reproduce the Izhikevich data
    through a user subclass (was ``test_adaptive.test_adapt_base_subclass_golden``)."""
    with precision(case):
        check_pure(golden_module(case, backend, QuadraticAdaptNode, step_mode="m"), case)


# --- non-spiking nodes ---------------------------------------------------------------------------

def check_nonspiking(case, backend):
    """Decoded output under jit, dL/dx, and the membrane sequence from the bound step."""
    with precision(case):
        module = golden_module(case, backend)
        x = jnp.asarray(case["x"])
        res, grads = forward_and_vjp(lambda p: {"out": module(p["x"])}, {"x": x},
                                     {"out": case["gout"]})
        assert_close(res["out"], case["out"], case, "value", "out")
        check_grads(grads, case, {"x": "grad_x"})
        _, v_seq = kernels.multi_step(module.bound_step(), module.init_state(x[0]), x,
                                      module.params(), backend=backend)
        assert_close(v_seq, case["v_seq"], case, "value", "v_seq")


# --- PSN family ----------------------------------------------------------------------------------

def _psn_single_step_capable(case) -> bool:
    return case.meta["class"] == "SlidingPSN" or (
        case.meta["class"] == "MaskedPSN" and float(case["lambda_"]) >= 1)


def check_psn(case, backend):
    """PSN / MaskedPSN / SlidingPSN (was ``test_psn``): jitted multi-step spikes, gradients
    w.r.t. x, weight, bias, single steps; MaskedPSN masks; gradients through single steps;
    the stateful call in every step mode the class has (parameters loaded)."""
    cls_name = case.meta["class"]
    single = _psn_single_step_capable(case)

    def make(**over):
        m = golden_module(case, backend, **{"rngs": nnx.Rngs(1), **over})
        if "lambda_" in case:
            m.lambda_ = case["lambda_"]
        return m

    with precision(case):
        module = make()
        check_pure(module, case, single_step=single)
        x = jnp.asarray(case["x"])
        params = learnable_params(case)

        if cls_name == "MaskedPSN":
            m = make()
            load_params(m, case)
            assert_close(m.mask0, case["mask0"], case, "binary", "mask0")
            assert_close(m.mask1, case["mask1"], case, "binary", "mask1")
            assert_close(m.masked_weight(), case["masked_weight"], case, "value", "masked_weight")
            np.testing.assert_array_equal(np.asarray(m.lambda_, np.float64), case["lambda_"])

        if single:   # gradients through T single steps equal the reference's (multi-step) ones
            def run(p):
                step = lambda state, xt: module.step(state, xt, p["params"])  # noqa: E731
                return {"out": jax.lax.scan(step, module.init_state(p["x"][0]), p["x"])[1]}

            res, grads = forward_and_vjp(run, {"x": x, "params": params}, {"out": case["gout"]})
            assert_close(res["out"], case["out"], case, "binary", "out (single-step)")
            check_grads(grads, case, {"x": "grad_x", ("params", "weight"): "grad_param_weight",
                                      ("params", "bias"): "grad_param_bias"})

        m = make(**({} if cls_name == "PSN" else {"step_mode": "m"}))
        load_params(m, case)
        assert_close(m(x), case["out"], case, "binary", "out (stateful, m)")
        if single:
            s = make(step_mode="s")
            load_params(s, case)
            assert_close(stateful_run(s, x, "s"), case["out"], case, "binary",
                         "out (stateful, s)")
            assert s.queue.shape == (s.k,) + x.shape[1:]
            s.reset()
            assert s.queue.shape == () and float(s.queue) == 0  # back to its initial value


# --- DSR -----------------------------------------------------------------------------------------

def check_dsr(case, backend):
    """Outputs exactly, rate-based gradients w.r.t. x and v_threshold (jit), stateful call
    (plain and under ``nnx.jit``) with the stored parameter value (was ``test_dsr_online``)."""
    with precision(case):
        m = golden_module(case, backend)
        x = jnp.asarray(case["x"])
        params = learnable_params(case)
        assert set(params) == {"v_threshold"}
        res, grads = forward_and_vjp(lambda p: {"out": m.multi_step({}, p["x"], p["params"])[1]},
                                     {"x": x, "params": params}, {"out": case["gout"]})
        out = res["out"]
        assert out.dtype == x.dtype
        np.testing.assert_array_equal(out, case["out"], err_msg=f"{case.name}: out")
        check_grads(grads, case, {"x": "grad_x",
                                  ("params", "v_threshold"): "grad_param_v_threshold"})
        m.v_threshold.set_value(params["v_threshold"])
        np.testing.assert_array_equal(m(x), case["out"])
        np.testing.assert_array_equal(nnx.jit(lambda m, x: m(x))(m, x), case["out"])


# --- OTTT / SLTT ---------------------------------------------------------------------------------

def check_online(case, backend):
    """Single steps under jit (the reference's mode): spikes, traces, v/trace sequences and
    finals, dL/dx; multi_step gives the same values and gradient; eval: no gradient at all. Then
    the stateful call in 's' mode ([spike, trace] for OTTT in training) and 'm' mode."""
    train = case.meta["train_mode"]
    ottt = case.meta["class"] == "OTTTLIFNode"

    def spikes_of(o):
        return o[0] if (ottt and train) else o

    with precision(case):
        m = golden_module(case, backend, step_mode="s", **train_flag(case))
        x = jnp.asarray(case["x"])
        step = jax.jit(m.step)

        def loop(x):
            state, outs, states = m.init_state(x[0]), [], []
            for t in range(x.shape[0]):
                state, o = step(state, x[t])
                outs.append(o)
                states.append(state)
            outs = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)
            return outs, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)

        outs, seq = loop(x)
        spikes = spikes_of(outs)
        assert spikes.dtype == x.dtype
        assert_close(spikes, case["out"], case, "binary", "out")
        if "out_trace" in case:
            assert_close(outs[1], case["out_trace"], case, "value", "out_trace")
        for k in ("v", "trace"):
            if f"{k}_seq" in case:
                assert_close(seq[k], case[f"{k}_seq"], case, "value", f"{k}_seq")
                assert_close(seq[k][-1], case[f"{k}_final"], case, "value", f"{k}_final")

        def run(p):
            mseq, mout = m.multi_step(m.init_state(p["x"][0]), p["x"], return_state_seq=True)
            return {"out": spikes_of(mout), "v_seq": mseq["v"]}

        if "gout" in case:
            assert train
            # through the single steps
            g_loop = jax.vjp(lambda p: spikes_of(loop(p["x"])[0]), {"x": x})[1](
                jnp.asarray(case["gout"], x.dtype))[0]
            check_grads(g_loop, case, {"x": "grad_x"})
            res, grads = forward_and_vjp(run, {"x": x}, {"out": case["gout"]})
            check_grads(grads, case, {"x": "grad_x"})
        else:
            # eval: a hard step, no gradient at all
            assert not train
            res, grads = forward_and_vjp(run, {"x": x}, {"out": np.ones(case["out"].shape)})
            assert not np.any(np.asarray(grads["x"]))
        assert_close(res["out"], case["out"], case, "binary", "out (multi_step)")
        assert_close(res["v_seq"], case["v_seq"], case, "value", "v_seq (multi_step)")

        s = golden_module(case, backend, step_mode="s", **train_flag(case))
        outs = [s(x[t]) for t in range(x.shape[0])]
        if ottt and train:
            assert all(isinstance(o, tuple) and len(o) == 2 for o in outs)
            outs = [o[0] for o in outs]
            assert_close(s.trace, case["trace_final"], case, "value", "trace (stateful)")
        assert_close(jnp.stack(outs), case["out"], case, "binary", "out (stateful s)")
        assert_close(s.v, case["v_final"], case, "value", "v (stateful s)")
        mm = golden_module(case, backend, step_mode="m", **train_flag(case))
        assert_close(spikes_of(mm(x)), case["out"], case, "binary", "out (stateful m)")
        assert_close(mm.v, case["v_final"], case, "value", "v (stateful m)")


# --- MPBN ----------------------------------------------------------------------------------------

def _mpbn_build(case, backend, step_mode="m"):
    """The module of a case, in the case's train/eval mode, folded as the case says."""
    m = golden_module(case, backend, step_mode=step_mode,
                      use_running_average=not case.meta["train_mode"])
    if "folded" in case.name:
        m.re_parameterize_v_threshold(normalize_residual="normalize_residual" in case.name,
                                      running_stats="running_stats" in case.name)
    return m


def _mpbn_stats(case, when):
    """The statistics of the file (``when`` = 'before' / 'after') as the step's ``stats`` dict."""
    s = {}
    if f"bn_running_mean_{when}" in case:
        s["running_mean"] = jnp.asarray(case[f"bn_running_mean_{when}"])
        s["running_var"] = jnp.asarray(case[f"bn_running_var_{when}"])
        s["num_batches_tracked"] = jnp.asarray(case[f"bn_num_batches_tracked_{when}"], jnp.int32)
    if f"fold_mu_{when}" in case:
        s["mu"] = jnp.asarray(case[f"fold_mu_{when}"])
        s["sigma2"] = jnp.asarray(case[f"fold_sigma2_{when}"])
        s["bn_momentum"] = jnp.asarray(case.meta[f"bn_momentum_{when}"])
    return s


def _mpbn_check_stats(actual, case, what):
    expected = _mpbn_stats(case, "after")
    assert set(actual) == set(expected), (set(actual), set(expected))
    for k, e in expected.items():
        if k == "num_batches_tracked":
            assert int(actual[k]) == int(e), f"{case.name}: {what} {k}"
        else:
            assert_close(actual[k], np.asarray(e), case, "value", f"{what} {k}")


def _mpbn_load(m, case):
    """Put the file's parameters and 'before' statistics into the module's variables."""
    for k, val in learnable_params(case).items():
        var = getattr(m.vbn, k[len("vbn_"):]) if k.startswith("vbn_") else getattr(m, k)
        var.set_value(val)
    for k, val in _mpbn_stats(case, "before").items():
        var = getattr(m.vbn, k) if m.vbn is not None and hasattr(m.vbn, k) else getattr(m, k)
        var.set_value(val)


def check_mpbn(case, backend):
    """Pure API under jit: spikes, v_seq, v_final, statistics after, all gradients; single step.
    Then ``m(x)`` in both step modes under ``nnx.jit`` with the file's parameters and statistics
    loaded: output, final membrane, module statistics (advanced in training, untouched in eval).
    (Was ``test_mpbn.test_golden_pure`` / ``test_golden_stateful``.)"""
    with precision(case):
        m = _mpbn_build(case, backend)
        x = jnp.asarray(case["x"])
        state0 = {"v": m.init_state(x[0])["v"], "stats": _mpbn_stats(case, "before")}
        params = learnable_params(case)
        assert set(params) <= set(m.params()), (set(params), set(m.params()))

        def run(p):
            seq, out = m.multi_step(p["state"], p["x"], p["params"], return_state_seq=True)
            return {"out": out, "seq": seq}

        primals = {"x": x, "state": state0, "params": params}
        res, grads = forward_and_vjp(run, primals, {"out": case["gout"]})
        assert res["out"].dtype == x.dtype
        assert_close(res["out"], case["out"], case, "binary", "out")
        assert_close(res["seq"]["v"], case["v_seq"], case, "value", "v_seq")
        assert_close(res["seq"]["v"][-1], case["v_final"], case, "value", "v_final")
        _mpbn_check_stats(jax.tree_util.tree_map(lambda a: a[-1], res["seq"]["stats"]), case,
                          "stats")
        grad_keys = {"x": "grad_x"}
        grad_keys.update({("params", k): f"grad_param_{k}" for k in params})
        check_grads(grads, case, grad_keys)

        step = jax.jit(m.step)
        state, outs = state0, []
        for t in range(x.shape[0]):
            state, o = step(state, x[t], params)
            outs.append(o)
        assert_close(jnp.stack(outs), case["out"], case, "binary", "out (single-step)")
        assert_close(state["v"], case["v_final"], case, "value", "v_final (single-step)")
        _mpbn_check_stats(state["stats"], case, "stats (single-step)")

        for step_mode in ("m", "s"):
            m = _mpbn_build(case, backend, step_mode)
            _mpbn_load(m, case)
            f = nnx.jit(lambda m, x: m(x))
            out = f(m, x) if step_mode == "m" else jnp.stack([f(m, x[t])
                                                               for t in range(x.shape[0])])
            assert_close(out, case["out"], case, "binary", f"out (stateful {step_mode})")
            assert_close(m.v, case["v_final"], case, "value", f"v (stateful {step_mode})")
            after = m.stats()
            if case.meta["train_mode"]:
                _mpbn_check_stats(after, case, "module stats")
            else:
                before = _mpbn_stats(case, "before")
                for k in before:
                    np.testing.assert_array_equal(after[k], before[k])


# --- noisy nodes ---------------------------------------------------------------------------------

def _noisy_build(case, backend):
    return golden_module(case, backend, rngs=nnx.Rngs(0))


def _reference_cn(case):
    """The noise of a training case in the reference's load_colored_noise layout [B, T, k*K]."""
    if "cn" in case:
        return jnp.asarray(case["cn"])
    if "noise_v" in case:
        return jnp.concatenate([case["noise_v"], case["noise_s"]], axis=-1)[None]
    return jnp.asarray(case["noise"])[None]


def _pure_noise(m, case):
    """The same noise for the pure API: time first, split into kinds."""
    if m.deterministic:
        return None
    if "noise_v" in case:
        return (jnp.asarray(case["noise_v"]), jnp.asarray(case["noise_s"]))
    if "noise" in case:
        return jnp.asarray(case["noise"])
    cn = jnp.swapaxes(jnp.asarray(case["cn"]), 0, 1)  # [T, B, k*K]: per-sample noise
    k = m.num_node
    return (cn[..., :k], cn[..., k:]) if cn.shape[-1] == 2 * k else cn


def check_noisy_spiking(case, backend):
    """NoisyCUBALIF / NoisyILCCUBALIF (was ``test_ilc_noisy``): jitted multi-step output, v/c
    sequences and finals, the clean spikes, gradients w.r.t. x and every parameter; single
    steps; then the reference's route: ``load_colored_noise(cn)``, ``m(x)`` (eval: no noise)."""
    with precision(case):
        m = _noisy_build(case, backend)
        x = jnp.asarray(case["x"])
        params = learnable_params(case)
        noise = _pure_noise(m, case)
        state0 = m.init_state(x[0])
        out_kind = default_kind(case)

        def run(p):
            seq, out = m.multi_step(p["state"], p["x"], p["params"], noise=p["noise"],
                                    return_state_seq=True)
            return {"out": out, "seq": seq}

        primals = {"x": x, "state": state0, "params": params, "noise": noise}
        res, grads = forward_and_vjp(run, primals, {"out": case["gout"]})
        assert res["out"].dtype == x.dtype
        assert_close(res["out"], case["out"], case, out_kind, "out")
        for name in ("v", "c"):
            assert_close(res["seq"][name], case[f"{name}_seq"], case, "value", f"{name}_seq")
            assert_close(res["seq"][name][-1], case[f"{name}_final"], case, "value",
                         f"{name}_final")
        if "spike_clean" in case:
            n_s = noise[1] if noise[1].ndim == x.ndim else noise[1][:, None]  # shared by batch
            sigma_s = np.float32(m.sigma_s) if n_s.dtype == jnp.float32 else m.sigma_s
            assert_close(res["out"] - sigma_s * n_s, case["spike_clean"], case, "value",
                         "spike_clean")
        grad_keys = {"x": "grad_x"}
        grad_keys.update({("params", k): f"grad_param_{k}" for k in params})
        check_grads(grads, case, grad_keys)

        step = jax.jit(m.step)
        state, outs = state0, []
        for t in range(x.shape[0]):
            n_t = None if noise is None else tuple(n[t] for n in noise)
            state, o = step(state, x[t], params, noise=n_t)
            outs.append(o)
        assert_close(jnp.stack(outs), case["out"], case, out_kind, "out (single-step)")
        assert_close(state["v"], case["v_final"], case, "value", "v_final (single-step)")

        m = _noisy_build(case, backend)
        load_params(m, case)
        if not m.deterministic:
            m.load_colored_noise(_reference_cn(case))
        assert_close(m(x), case["out"], case, out_kind, "out (stateful)")
        assert_close(m.v, case["v_final"], case, "value", "v (stateful)")
        assert_close(m.c, case["c_final"], case, "value", "c (stateful)")
        assert int(m.noise_step.get_value()) == -1  # loaded noise does not advance it


def check_noisy_nonspiking(case, backend):
    """Decoded output, gradients w.r.t. x and the learnable sigma (jitted); the stateful call
    with the noise loaded; single steps (was ``test_ilc_noisy.test_noisy_nonspiking_golden``)."""
    with precision(case):
        m = _noisy_build(case, backend)
        x = jnp.asarray(case["x"])
        params = learnable_params(case)
        noise = _pure_noise(m, case)

        def run(p):
            return {"out": m.multi_step(m.init_state(p["x"][0]), p["x"], p["params"],
                                        noise=p["noise"])[1]}

        primals = {"x": x, "params": params, "noise": noise}
        res, grads = forward_and_vjp(run, primals, {"out": case["gout"]})
        assert_close(res["out"], case["out"], case, "value", "out")
        check_grads(grads, case, {"x": "grad_x", ("params", "sigma"): "grad_param_sigma"})

        load_params(m, case)
        if not m.deterministic:
            m.load_colored_noise(_reference_cn(case))
        assert_close(m(x), case["out"], case, "value", "out (stateful)")

        state, vs = m.init_state(x[0]), []
        for t in range(x.shape[0]):
            state, v = m.step(state, x[t], params, noise=None if noise is None else noise[t])
            vs.append(v)
        if case.meta["kwargs"].get("decode") is None:
            assert_close(jnp.stack(vs), case["out"], case, "value", "out (single-step)")
        elif case.meta["kwargs"]["decode"] == "last-me":
            assert_close(vs[-1], case["out"], case, "value", "out (single-step)")


# --- FlexSN --------------------------------------------------------------------------------------

SIG = surrogate.Sigmoid(alpha=4.0)
ATAN = surrogate.ATan(alpha=2.0)


def lif_core(x, v):
    h = v + (x - v) / 2.0
    s = SIG(h - 1.0)
    return s, h * (1.0 - s)


def plif_core(x, v, w):
    h = v + (x - v) * jax.nn.sigmoid(w)
    s = ATAN(h - 1.0)
    return s, h - s


def two_input_core(x, y, v, c):
    c2 = 0.5 * c + y
    h = 0.75 * v + x + c2
    s = SIG(h - 1.0)
    return s, h, h * (1.0 - s), c2


def atan_lif_core(x, v):
    """LIFNode(tau=2, ATan) written as a FlexSN core (spec flexsn.md section 3)."""
    h = v + (x - v) / 2.0
    s = ATAN(h - 1.0)
    return s, s * 0.0 + (1.0 - s) * h


def _flexsn_lif_core(case, backend):
    f = neuron.FlexSN(lif_core, num_states=1, backend=backend)
    x = jnp.asarray(case["x"])

    def run(p):
        state, outs = f.multi_step(f.init_state(p["x"][0]), p["x"])
        return {"out": outs[0], "v": state[0]}

    res, grads = forward_and_vjp(run, {"x": x}, {"out": case["gout"]})
    assert_close(res["out"], case["out"], case, "binary", "out")
    assert_close(res["v"], case["_state_0_final"], case, "value", "_state_0_final")
    check_grads(grads, case, {"x": "grad_x"})
    out = f(x)                                 # stateful module call
    assert_close(out, case["out"], case, "binary", "out (module)")
    assert_close(f.states[0], case["_state_0_final"], case, "value", "state (module)")


def _flexsn_plif_core_static_param(case, backend):
    w = nnx.Param(jnp.asarray(case["param__static_input_0"]))
    f = neuron.FlexSN(plif_core, num_states=1, static_inputs=(w,), backend=backend)
    x = jnp.asarray(case["x"])

    def run(p):
        st, outs = f.multi_step(f.init_state(p["x"][0]), p["x"], p["params"],
                                return_state_seq=True)
        return {"out": outs[0], "seq": st[0]}

    res, grads = forward_and_vjp(run, {"x": x, "params": f.params()}, {"out": case["gout"]})
    assert_close(res["out"], case["out"], case, "binary", "out")
    assert_close(res["seq"], case["_state_0_seq"], case, "value", "_state_0_seq")
    check_grads(grads, case, {"x": "grad_x",
                              ("params", "_static_input_0"): "grad_param__static_input_0"})
    # the learnable static input is an nnx.Param of the module
    assert "_static_input_0" in nnx.state(f, nnx.Param)


def _flexsn_two_inputs_two_outputs(case, backend):
    f = neuron.FlexSN(two_input_core, num_states=2, store_state_seqs=True, backend=backend)
    assert (f.num_inputs, f.num_outputs) == (2, 2)
    x, y = jnp.asarray(case["x"]), jnp.asarray(case["x1"])
    s, h = f(x, y)
    assert_close(s, case["out"], case, "binary", "out")
    assert_close(h, case["out_h"], case, "value", "out_h")
    for i in range(2):
        assert_close(f.state_seqs[i], case[f"_state_{i}_seq"], case, "value", f"_state_{i}_seq")
        assert_close(f.states[i], case[f"_state_{i}_final"], case, "value", f"_state_{i}_final")

    def run(p):
        _, outs = f.multi_step(f.init_state(p["x"][0]), (p["x"], p["x1"]))
        return {"out": outs[0], "out_h": outs[1]}

    _, grads = forward_and_vjp(run, {"x": x, "x1": y},
                               {"out": case["gout"], "out_h": case["gout_h"]})
    check_grads(grads, case, {"x": "grad_x", "x1": "grad_x1"})


def _flexsn_reproduces_lifnode(case, backend):
    """A FlexSN LIF core equals LIFNode(tau=2, ATan) on LIFNode's golden data."""
    f = neuron.FlexSN(atan_lif_core, num_states=1, backend=backend)
    x = jnp.asarray(case["x"])
    res, grads = forward_and_vjp(
        lambda p: {"out": f.multi_step(f.init_state(p["x"][0]), p["x"])[1][0]}, {"x": x},
        {"out": case["gout"]})
    assert_close(res["out"], case["out"], case, "binary", "out")
    check_grads(grads, case, {"x": "grad_x"})


def native_lif_step(state, x, params):
    """A LIF step in FlexSN.from_step form (the registry's default NativeFlexSN)."""
    h = state["v"] + (x - state["v"]) / params["tau"]
    s = SIG(h - 1.0)
    return {"v": h * (1.0 - s)}, s


def native_lif_init(x):
    return {"v": jnp.zeros_like(x)}


FLEXSN_CASES = {
    "FlexSN__lif_core": _flexsn_lif_core,
    "FlexSN__plif_core_static_param": _flexsn_plif_core_static_param,
    "FlexSN__two_inputs_two_outputs": _flexsn_two_inputs_two_outputs,
    "LIFNode__atan": _flexsn_reproduces_lifnode,
}


def check_flexsn(case, backend):
    """The FlexSN golden cases, each with the core it was generated with (was ``test_flexsn``),
    plus a FlexSN LIF core on ``LIFNode__atan``."""
    if case.name not in FLEXSN_CASES:
        raise KeyError(f"{case.name}: no FlexSN core is known for this case; add one to "
                       f"golden_checks.FLEXSN_CASES")
    with precision(case):
        FLEXSN_CASES[case.name](case, backend)

