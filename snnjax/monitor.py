"""Record what the layers of a model output during a forward pass, under ``jit``, without
changing the model's code (SpikingJelly's ``activation_based.monitor`` counterparts).

SpikingJelly registers forward hooks that append to a list on the monitor. JAX programs are
traced, so here a monitor *wraps the forward function*: ``forward = mon.capture(fn)`` returns
``(fn(model, ...), records)``, where ``records`` maps each monitored layer's name (its path in
the model, e.g. ``'layers.1'``) to the list of recorded values, one per call of that layer, in
call order. Records are ordinary outputs of the function, so they come out of ``jax.jit``,
``nnx.jit``, ``nnx.scan`` (stacked over steps), ``jax.grad(..., has_aux=True)`` and ``vmap``.
While the wrapped function runs (is traced), each monitored module's class is temporarily
replaced by a subclass whose ``__call__`` records; nothing changes in the model outside it.

* :class:`OutputMonitor`: ``function_on_output(output)`` of every call.
* :class:`InputMonitor`: ``function_on_input(input)``.
* :class:`AttributeMonitor`: ``function_on_attribute(getattr(module, name))`` before or after
  every call (e.g. the membrane ``'v'``; ``nnx.Variable`` values are read).
* :class:`FiringRateMonitor`: firing rate, spike count and optionally the membrane of every
  spiking neuron; :func:`firing_rates` reduces its records to one rate per layer,
  :func:`print_firing_rates` / :func:`plot_firing_rates` show them.

Each monitor also keeps concrete records the way the reference does (``mon.records``,
``mon['layer']``, ``mon.monitored_layers``, ``clear_recorded_data``): records of an eager call
are added automatically; pass those returned by a jitted call to :meth:`BaseMonitor.add`.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import jax
import jax.core  # noqa: F401  (jax.core.Tracer below: type checkers need the submodule import)
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array
Records = dict[str, list[Any]]

_ACTIVE: list["_Session"] = []          # the recording sessions of the functions being traced
_SUBCLASSES: dict[type, type] = {}


def _value(a: Any) -> Any:
    return a.get_value() if isinstance(a, nnx.Variable) else a


def _name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


class _Session:
    """One run of a wrapped function: which module objects record what, and the records."""

    def __init__(self, hooks: dict[int, tuple[str, "BaseMonitor"]]):
        self.hooks = hooks
        self.records: Records = {name: [] for name, _ in hooks.values()}


def _recording_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    base = _SUBCLASS_BASE[type(self)]
    hits = [(s, *s.hooks[id(self)]) for s in _ACTIVE if id(self) in s.hooks]
    for session, name, mon in hits:
        value = mon._before(self, args, kwargs)
        if value is not _NOTHING:
            session.records[name].append(value)
    out = base.__call__(self, *args, **kwargs)
    for session, name, mon in hits:
        value = mon._after(self, args, kwargs, out)
        if value is not _NOTHING:
            session.records[name].append(value)
    return out


_SUBCLASS_BASE: dict[type, type] = {}
_NOTHING = object()


def _recording_class(cls: type) -> type:
    sub = _SUBCLASSES.get(cls)
    if sub is None:
        # __module__ under snnjax: the neuron bases' ported-neuron checks skip library classes
        sub = type(cls.__name__, (cls,), {"__call__": _recording_call,
                                          "__module__": "snnjax.monitor",
                                          "__qualname__": f"Monitored[{cls.__qualname__}]"})
        _SUBCLASSES[cls] = sub
        _SUBCLASS_BASE[sub] = cls
    return sub


class BaseMonitor:
    """Common part of the monitors: which layers, the wrapping, and the concrete records.

    Args:
      net: the model (an ``nnx.Module``); the monitored layers are its sub-modules (the model
        itself included) that are instances of ``instance``, found by path.
      instance: a class or tuple of classes (default: ``type(net)``, as the reference).
    """

    def __init__(self, net: nnx.Module, instance: type | tuple[type, ...] | None = None):
        if not isinstance(net, nnx.Module):
            raise TypeError(f"{type(self).__name__}: net must be a flax.nnx.Module, got "
                            f"{type(net).__name__}")
        self.instance = type(net) if instance is None else instance
        self.monitored_layers: list[str] = [_name(p) for p, m in nnx.iter_modules(net)
                                            if isinstance(m, self.instance)]
        self.records: list[Any] = []
        self.name_records_index: dict[str, list[int]] = {n: [] for n in self.monitored_layers}
        self._enable = True

    # -- what is recorded (subclasses) ----------------------------------------------------------

    def _before(self, module: Any, args: tuple, kwargs: dict) -> Any:
        return _NOTHING

    def _after(self, module: Any, args: tuple, kwargs: dict, out: Any) -> Any:
        return _NOTHING

    # -- wrapping -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _installed(self, model: nnx.Module) -> Iterator[_Session]:
        wanted = set(self.monitored_layers)
        found = {_name(p): m for p, m in nnx.iter_modules(model)
                 if _name(p) in wanted and isinstance(m, self.instance)}
        missing = wanted - set(found)
        if missing:
            raise ValueError(f"{type(self).__name__}: the model passed to the wrapped function "
                             f"lacks the monitored layers {sorted(missing)}; pass the model the "
                             f"monitor was built for as the first argument")
        session = _Session({id(m): (n, self) for n, m in found.items()})
        swapped = []
        try:
            for m in found.values():
                if type(m) not in _SUBCLASS_BASE:
                    cls = type(m)
                    object.__setattr__(m, "__class__", _recording_class(cls))
                    swapped.append((m, cls))
            _ACTIVE.append(session)
            yield session
        finally:
            if session in _ACTIVE:
                _ACTIVE.remove(session)
            for m, cls in swapped:
                object.__setattr__(m, "__class__", cls)

    def capture(self, fn: Callable[..., Any]) -> Callable[..., tuple[Any, Records]]:
        """Wrap ``fn(model, *args, **kwargs)``: the wrapped function returns
        ``(fn(...), records)``, ``records = {layer_name: [value per call]}``.

        ``model`` (the first argument) must be the monitored model or a copy of it (e.g. the
        copy ``nnx.jit`` or ``nnx.merge`` makes); wrap inside the jitted function or jit the
        wrapped one.
        """
        @functools.wraps(fn)
        def wrapped(model: nnx.Module, *args: Any, **kwargs: Any) -> tuple[Any, Records]:
            if not self._enable:
                return fn(model, *args, **kwargs), {n: [] for n in self.monitored_layers}
            with self._installed(model) as session:
                out = fn(model, *args, **kwargs)
            records = session.records
            if not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(records)):
                self.add(records)
            return out, records
        return wrapped

    def __call__(self, model: nnx.Module, *args: Any, **kwargs: Any) -> tuple[Any, Records]:
        """``model(*args, **kwargs)`` with recording: ``(output, records)``."""
        return self.capture(lambda m, *a, **k: m(*a, **k))(model, *args, **kwargs)

    # -- the reference's record-keeping -----------------------------------------------------------

    def add(self, records: Records) -> None:
        """Append the (concrete) records returned by a wrapped call to :attr:`records`."""
        for name, values in records.items():
            if name not in self.name_records_index:
                raise KeyError(f"{type(self).__name__}: {name!r} is not a monitored layer")
            for v in values:
                self.name_records_index[name].append(len(self.records))
                self.records.append(v)

    def __getitem__(self, i: int | str) -> Any:
        if isinstance(i, int):
            return self.records[i]
        if isinstance(i, str):
            return [self.records[j] for j in self.name_records_index[i]]
        raise ValueError(i)

    def clear_recorded_data(self) -> None:
        self.records.clear()
        for v in self.name_records_index.values():
            v.clear()

    def enable(self) -> None:
        self._enable = True

    def disable(self) -> None:
        """Wrapped functions run without recording (their records are empty lists)."""
        self._enable = False

    def is_enable(self) -> bool:
        return self._enable


def _identity(x: Any) -> Any:
    return x


def _single(t: Any) -> Any:
    return t[0] if isinstance(t, tuple) and len(t) == 1 else t


class OutputMonitor(BaseMonitor):
    """Record ``function_on_output(output)`` of every call of the monitored layers.

    Args:
      net: the model (an ``nnx.Module``), as :class:`BaseMonitor`.
      instance: a class or tuple of classes to monitor (default ``None``: ``type(net)``).
      function_on_output: applied to each output (default: the output itself), e.g.
        ``lambda s: s.mean()`` for a firing rate.
    """

    def __init__(self, net: nnx.Module, instance: type | tuple[type, ...] | None = None,
                 function_on_output: Callable[[Any], Any] = _identity):
        super().__init__(net, instance)
        self.function_on_output = function_on_output

    def _after(self, module: Any, args: tuple, kwargs: dict, out: Any) -> Any:
        return self.function_on_output(_single(out))


class InputMonitor(BaseMonitor):
    """Record ``function_on_input(input)`` of every call (the positional inputs; one input is
    passed on its own).

    Args:
      net: the model (an ``nnx.Module``), as :class:`BaseMonitor`.
      instance: a class or tuple of classes to monitor (default ``None``: ``type(net)``).
      function_on_input: applied to each input (default: the input itself).
    """

    def __init__(self, net: nnx.Module, instance: type | tuple[type, ...] | None = None,
                 function_on_input: Callable[[Any], Any] = _identity):
        super().__init__(net, instance)
        self.function_on_input = function_on_input

    def _before(self, module: Any, args: tuple, kwargs: dict) -> Any:
        return self.function_on_input(_single(args))


class AttributeMonitor(BaseMonitor):
    """Record ``function_on_attribute(module.<attribute_name>)`` before (``pre_forward=True``)
    or after every call, e.g. ``AttributeMonitor('v', False, net, neuron.LIFNode)`` for the
    membrane after each call (``'v_seq'`` for the recorded sequence with ``store_v_seq``).

    Args:
      attribute_name: the attribute (an ``nnx.Variable``'s value is read).
      pre_forward: ``True``: read it before the call; ``False``: after.
      net: the model (an ``nnx.Module``), as :class:`BaseMonitor`.
      instance: a class or tuple of classes to monitor (default ``None``: ``type(net)``).
      function_on_attribute: applied to each value (default: the value itself).
    """

    def __init__(self, attribute_name: str, pre_forward: bool, net: nnx.Module,
                 instance: type | tuple[type, ...] | None = None,
                 function_on_attribute: Callable[[Any], Any] = _identity):
        super().__init__(net, instance)
        self.attribute_name = attribute_name
        self.pre_forward = bool(pre_forward)
        self.function_on_attribute = function_on_attribute

    def _read(self, module: Any) -> Any:
        return self.function_on_attribute(_value(getattr(module, self.attribute_name)))

    def _before(self, module: Any, args: tuple, kwargs: dict) -> Any:
        return self._read(module) if self.pre_forward else _NOTHING

    def _after(self, module: Any, args: tuple, kwargs: dict, out: Any) -> Any:
        return _NOTHING if self.pre_forward else self._read(module)


def _spiking_classes() -> tuple[type, ...]:
    from snnjax import neuron
    return (neuron.BaseNode, neuron.PSN, neuron.MaskedPSN, neuron.SlidingPSN)


class FiringRateMonitor(BaseMonitor):
    """Firing rate, spike counts and (optionally) the membrane of every spiking neuron.

    Per call of a monitored layer with output spikes ``S`` (``[T, B, *]`` for ``step_mode='m'``,
    ``[B, *]`` for ``'s'``) the record is a dict:

    * ``'firing_rate'``: ``mean(S)``, a scalar;
    * ``'spike_count'``: ``sum_t S[t]`` per sample and neuron, ``[B, *]`` (``'s'``: ``S``);
    * ``'num_steps'``: ``T`` (``1`` for ``'s'``), an int;
    * with ``membrane=True``, ``'v'``: the membrane after the call (``v_seq``, ``[T, B, *]``, when
      the neuron records it, else the final ``v``).

    Args:
      net: the model.
      instance: the layers to monitor (default: every spiking neuron of :mod:`snnjax.neuron`,
        i.e. ``BaseNode`` subclasses and the PSN family).
      membrane: also record membranes.
    """

    def __init__(self, net: nnx.Module, instance: type | tuple[type, ...] | None = None,
                 membrane: bool = False):
        super().__init__(net, _spiking_classes() if instance is None else instance)
        self.membrane = bool(membrane)

    def _after(self, module: Any, args: tuple, kwargs: dict, out: Any) -> Any:
        s = jnp.asarray(_single(out))
        multi = getattr(module, "step_mode", "m") == "m" and s.ndim >= 2
        rec = {"firing_rate": jnp.mean(s.astype(jnp.float32)),
               "spike_count": s.astype(jnp.float32).sum(0) if multi else s.astype(jnp.float32),
               "num_steps": s.shape[0] if multi else 1}
        if self.membrane:
            v_seq = getattr(module, "v_seq", None)
            rec["v"] = _value(v_seq) if v_seq is not None else _value(getattr(module, "v", None))
        return rec


def firing_rates(records: Records) -> dict[str, float | Array]:
    """One firing rate per layer from :class:`FiringRateMonitor` records: the spike total over
    all calls divided by the number of neuron-steps, ``sum S / (T * B * n)``.

    Works on concrete and traced records (returns arrays then).

    Args:
      records: ``{layer_name: [record, ...]}`` as returned by a :class:`FiringRateMonitor` call
        (each record holds ``'spike_count'`` ``[B, *]`` and ``'num_steps'``).

    Returns:
      ``{layer_name: rate}`` (layers without records are left out).
    """
    out = {}
    for name, recs in records.items():
        if not recs:
            continue
        total = sum(jnp.sum(r["spike_count"]) for r in recs)
        count = sum(r["num_steps"] * r["spike_count"].size for r in recs)
        out[name] = total / count
    return out


def print_firing_rates(records: Records, file: Any = None) -> dict[str, float]:
    """Print one line per layer, ``name  rate`` (and return the rates as floats).

    Args:
      records: :class:`FiringRateMonitor` records, as :func:`firing_rates`.
      file: a text stream to print to (default ``None``: ``sys.stdout``).
    """
    rates = {k: float(v) for k, v in firing_rates(records).items()}
    width = max([len(k) for k in rates] + [5])
    print(f"{'layer':<{width}}  firing rate", file=file)
    for name, rate in rates.items():
        print(f"{name or '(model)':<{width}}  {rate:.4f}", file=file)
    return rates


def plot_firing_rates(records: Records, path: str | None = None, ax: Any = None) -> Any:
    """Bar chart of the per-layer firing rates (needs matplotlib, an optional dependency).

    Args:
      records: :class:`FiringRateMonitor` records.
      path: save the figure there (``None``: do not save).
      ax: an existing matplotlib axes (default: a new figure).

    Returns:
      the matplotlib axes.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:   # optional dependency
        raise ImportError("plot_firing_rates needs matplotlib: pip install matplotlib "
                          "(or use print_firing_rates)") from e
    rates = {k or "(model)": float(v) for k, v in firing_rates(records).items()}
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.6 * len(rates) + 1.5), 3.0))
    ax.bar(range(len(rates)), list(rates.values()))
    ax.set_xticks(range(len(rates)), list(rates.keys()), rotation=45, ha="right")
    ax.set_ylabel("firing rate")
    ax.set_ylim(0, max([1e-3] + list(rates.values())) * 1.1)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path)
    return ax


__all__ = ["AttributeMonitor", "BaseMonitor", "FiringRateMonitor", "InputMonitor",
           "OutputMonitor", "firing_rates", "plot_firing_rates", "print_firing_rates"]
