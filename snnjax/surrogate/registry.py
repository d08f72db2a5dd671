"""Name-based lookup of surrogate functions (golden ``meta.kwargs`` and config files)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Type, Union, cast

from . import functions as _f
from .base import SurrogateFunction

__all__ = ["SURROGATES", "get_surrogate", "fused_surrogate_id"]

#: class name -> class, in the reference's order
SURROGATES: Dict[str, Type[SurrogateFunction]] = {name: getattr(_f, name) for name in _f.__all__}

# Classes with a hard-coded derivative in the reference's fused IF/LIF/PLIF kernels.
_FUSED_IDS: Dict[Type[SurrogateFunction], int] = {
    _f.Sigmoid: 0,
    _f.ATan: 1,
    _f.PiecewiseQuadratic: 2,
    _f.PiecewiseExp: 3,
    _f.SoftSign: 4,
    _f.SuperSpike: 5,
    _f.Erf: 6,
}

SurrogateSpec = Union[SurrogateFunction, str, Mapping[str, Any], None]


def _lookup(name: Any) -> Type[SurrogateFunction]:
    if not isinstance(name, str) or name not in SURROGATES:
        raise ValueError(
            f"unknown surrogate {name!r}; valid names: {', '.join(SURROGATES)}"
        )
    return SURROGATES[name]


def get_surrogate(spec: SurrogateSpec) -> SurrogateFunction:
    """Build a surrogate from an instance, a class name or a dict.

    * an instance is returned unchanged;
    * ``None`` gives the neurons' default ``Sigmoid()``;
    * ``"ATan"`` gives ``ATan()``;
    * ``{"name": "ATan", "alpha": 2.0, "spiking": False}`` (golden ``meta.kwargs`` form) gives
      ``ATan(alpha=2.0, spiking=False)``.  For ``MultiLevelSpikeCount`` the resolved keys
      ``grad_min``/``grad_max`` are accepted in place of ``grad_window``; for
      ``FakeNumericalGradient`` a ``spiking`` key is applied with ``set_spiking_mode``.

    Args:
      spec: a :class:`SurrogateFunction` instance, ``None``, a class name of
        :data:`SURROGATES` or a dict with a ``'name'`` key and the class's arguments.

    Raises:
      TypeError: ``spec`` of another type.
      ValueError: an unknown name or argument, or an argument out of its range.
    """
    if isinstance(spec, SurrogateFunction):
        return spec
    if spec is None:
        return _f.Sigmoid()
    if isinstance(spec, str):
        return _lookup(spec)()
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        if "name" not in kwargs:
            raise ValueError(f"surrogate dict needs a 'name' key; got {spec!r}")
        cls = _lookup(kwargs.pop("name"))
        spiking = None
        if cls is _f.FakeNumericalGradient and "spiking" in kwargs:
            spiking = kwargs.pop("spiking")
        if cls is _f.MultiLevelSpikeCount and ("grad_min" in kwargs or "grad_max" in kwargs):
            if "grad_window" in kwargs:
                raise ValueError(
                    "MultiLevelSpikeCount: give either 'grad_window' or 'grad_min'/'grad_max'"
                )
            k = kwargs.get("max_spike_count", 1)
            kwargs["grad_window"] = (kwargs.pop("grad_min", 0.0), kwargs.pop("grad_max", k))
        allowed = [f.name for f in dataclasses.fields(cast(Any, cls)) if f.init]   # a dataclass
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown argument(s) {unknown}; allowed: {allowed}"
            )
        sg = cls(**kwargs)
        if spiking is not None:
            sg = sg.set_spiking_mode(spiking)
        return sg
    raise TypeError(
        "surrogate spec must be a SurrogateFunction, a class name, a dict with 'name', or None; "
        f"got {type(spec).__name__}"
    )


def fused_surrogate_id(sg: SurrogateFunction) -> Union[int, None]:
    """Id in the reference's fused derivative table, or ``None`` when it does not apply.

    Applies to the exact classes Sigmoid, ATan, PiecewiseQuadratic, PiecewiseExp, SoftSign,
    SuperSpike, Erf in spiking mode (subclasses excluded, as in the reference).

    Args:
      sg: a surrogate instance.

    Returns:
      ``0`` .. ``6`` for those classes, else ``None``.
    """
    fid = _FUSED_IDS.get(type(sg))
    return fid if fid is not None and sg.spiking else None
