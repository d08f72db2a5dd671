"""Docstrings of the public API (issue 13 point 1, issue 14 point 7), driven by ``__all__``.

Every public class and function of the public namespaces has its own docstring; the neuron,
surrogate, encoding, monitor and kernel classes and the public functions have a Google-style
``Args:`` section (LIAFNode's forwarded arguments: ``Other Parameters:``) naming every
constructor or call parameter, each with its default or "required". No jit, no arrays: fast.
"""
from __future__ import annotations

import inspect
import re

import pytest
from flax import nnx

from registry import ctor_params
from snnjax import encoding, functional, kernels, layer, monitor, neuron, surrogate
from snnjax import nir as snnir

NAMESPACES = (neuron, surrogate, functional, encoding, monitor, kernels, snnir)
SECTION = re.compile(r"^(\s*)(Args|Arguments|Other Parameters):\s*$")
ENTRY = re.compile(r"^(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\([^)]*\))?:\s")


def documented(doc: str) -> dict[str, str]:
    """``{name: text}`` of every entry of the docstring's argument sections."""
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = SECTION.match(lines[i])
        i += 1
        if not m:
            continue
        base, indent, current = len(m.group(1)), None, None
        while i < len(lines):
            line = lines[i]
            if line.strip():
                ind = len(line) - len(line.lstrip())
                if ind <= base:
                    break
                indent = ind if indent is None else indent
                if ind == indent:
                    e = ENTRY.match(line.strip())
                    assert e, f"not a 'name: description' entry: {line!r}"
                    names = [n.strip() for n in e.group(1).split(",")]
                    assert len(names) == 1, f"one argument per entry, got {names}"
                    current = names[0]
                    out[current] = line.strip()
                elif current is not None:
                    out[current] += " " + line.strip()
            i += 1
    return out


def public(module) -> list[tuple[str, object]]:
    return [(f"{module.__name__.split('.')[-1]}.{n}", getattr(module, n)) for n in module.__all__
            if inspect.isclass(getattr(module, n)) or inspect.isfunction(getattr(module, n))]


ALL = [item for mod in NAMESPACES + (layer,) for item in public(mod)]


@pytest.mark.parametrize("name,obj", ALL, ids=[n for n, _ in ALL])
def test_has_own_docstring(name, obj):
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    assert doc and doc.strip(), f"{name} has no docstring of its own"


def _param_names(obj) -> list[str]:
    if inspect.isclass(obj):
        return list(ctor_params(obj))
    out = []
    for p in inspect.signature(obj).parameters.values():
        out.append({p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name)
    return out


def _needs_args(obj) -> bool:
    """Classes with constructor arguments (nnx.Variable types excepted: Flax's own) and
    functions with parameters."""
    if inspect.isclass(obj):
        return not issubclass(obj, (nnx.Variable, BaseException)) and bool(ctor_params(obj))
    return bool(inspect.signature(obj).parameters)


STRICT = [(n, o) for mod in NAMESPACES + (layer,) for n, o in public(mod) if _needs_args(o)]


@pytest.mark.parametrize("name,obj", STRICT, ids=[n for n, _ in STRICT])
def test_args_name_every_parameter(name, obj):
    entries = {e.lstrip("*"): t for e, t in documented(obj.__doc__ or "").items()}
    params = [p.lstrip("*") for p in _param_names(obj)]
    if inspect.isclass(obj) and obj.__module__ == layer.__name__:   # layers wrap Flax's
        own = inspect.signature(obj.__init__).parameters
        params += [n for n, p in own.items() if p.kind is p.VAR_POSITIONAL and n not in params]
        if "kwargs" in entries and any(p.kind is p.VAR_KEYWORD for p in own.values()):
            # a documented **kwargs passed on to a Flax base covers that base's arguments
            params = [n for n in own if n != "self"]
    missing = [p for p in params if p not in entries]
    assert not missing, f"{name}: Args: does not document {missing}"
    unknown = [e for e in entries if e not in params]
    assert not unknown, f"{name}: Args: documents {unknown}, which {name} does not take"


CLASSES = [(n, o) for mod in (neuron, surrogate) for n, o in public(mod)
           if inspect.isclass(o) and _needs_args(o)]


@pytest.mark.parametrize("name,obj", CLASSES, ids=[n for n, _ in CLASSES])
def test_neuron_and_surrogate_args_state_defaults(name, obj):
    """Each constructor argument's entry says its default (or that it is required)."""
    entries = documented(obj.__doc__)
    for p, param in ctor_params(obj).items():
        text = entries[p]
        if param.default is inspect.Parameter.empty:
            assert "required" in text, f"{name}.{p}: say it is required: {text!r}"
        else:
            assert "default" in text, f"{name}.{p}: state the default: {text!r}"


def test_documented_ranges_match_the_checks():
    """The ranges written for the checked arguments are the ones ``_checks`` enforces (a few
    representatives of each kind of check)."""
    expect = {
        (neuron.LIFNode, "tau"): "> 1", (neuron.ParametricLIFNode, "init_tau"): "> 1",
        (neuron.AdaptBaseNode, "tau_w"): "> 0", (neuron.DSRLIFNode, "tau"): "> 0",
        (neuron.CUBALIFNode, "c_decay"): "[0, 1]", (neuron.MPBNLIFNode, "bn_momentum"): "[0, 1]",
        (neuron.GatedLIFNode, "init_tau"): "(0, 1)", (neuron.DSRIFNode, "alpha"): "(0, 1]",
        (neuron.NoisyCUBALIFNode, "sigma_init"): ">= 0", (neuron.BaseNode, "v_reset"):
        "< v_threshold", (surrogate.ATan, "alpha"): "> 0", (surrogate.QPseudoSpike, "alpha"):
        "> 1", (neuron.MPBNLIFNode, "backend"): "'scan'",
    }
    for (cls, arg), text in expect.items():
        assert text in documented(cls.__doc__)[arg], (cls.__name__, arg)
    # and the checks do reject the values just outside those ranges
    bad = [(neuron.LIFNode, dict(tau=1.0)), (neuron.ParametricLIFNode, dict(init_tau=1.0)),
           (neuron.CUBALIFNode, dict(c_decay=1.5)), (neuron.BaseNode, dict(v_reset=1.0)),
           (surrogate.QPseudoSpike, dict(alpha=1.0)), (surrogate.ATan, dict(alpha=0.0))]
    for cls, kw in bad:
        with pytest.raises(ValueError, match=next(iter(kw))):
            cls(**kw)
