"""Common machinery of the surrogate spike functions.

A surrogate is an immutable, hashable dataclass holding only Python hyperparameters.  It can
therefore be passed as a static argument of :func:`jax.jit` and as a ``nondiff_argnums`` operand
of :func:`jax.custom_vjp`.  Every spiking-mode call goes through the single custom VJP
:func:`_surrogate_spike` defined here: forward = the class's spike (Heaviside for most), backward
= cotangent times ``surrogate.derivative(x)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, ClassVar, Optional, Tuple, cast

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["heaviside", "propagate_nan", "SurrogateFunction"]

Array = jax.Array


def heaviside(x: Any) -> Array:
    r"""Step function with :math:`\Theta(0) = 1`.

    .. math:: \Theta(x) = 1 \text{ if } x \ge 0 \text{ else } 0

    Returned in ``x``'s dtype (integer inputs give integer outputs). ``-0.0`` fires. NaN gives NaN
    (snnjax's non-finite policy: a NaN membrane never looks like a valid spike or silence; the
    reference gives 0). Not differentiable by itself (zero gradient); the surrogate classes add
    the backward.

    Args:
      x: an array of any shape (or anything ``jnp.asarray`` takes).

    Returns:
      ``Theta(x)``, same shape and dtype as ``x``.
    """
    x = jnp.asarray(x)
    return propagate_nan(x, _step(x))


def _step(x: Array) -> Array:
    """``Theta(x)`` without the NaN rule (NaN gives 0)."""
    return (x >= 0).astype(x.dtype)


@jax.custom_jvp
def _where_nan(x: Array, s: Array) -> Array:
    # a select, not arithmetic: NaN passes through on every backend (x != x only for NaN)
    return jnp.where(x != x, x.astype(s.dtype), s)


# the tangent is s's: a fused backward computes no NaN test (and keeps no mask)
_where_nan.defjvp(lambda primals, tangents: (_where_nan(*primals), tangents[1]))


def propagate_nan(x: Any, s: Any) -> Array:
    """``s`` where ``x`` is not NaN, NaN where it is (the non-finite policy's spike: a NaN
    membrane never looks like a valid spike or silence). Differentiable in ``s`` (the gradient
    passes straight through), not in ``x``.

    Args:
      x: the value tested for NaN (a spike function's input), broadcastable to ``s``.
      s: the spike (any shape); an integer ``x`` or ``s`` is returned unchanged.

    Returns:
      ``s``'s shape and dtype.
    """
    x, s = jnp.asarray(x), jnp.asarray(s)
    if not (jnp.issubdtype(x.dtype, jnp.inexact) and jnp.issubdtype(s.dtype, jnp.inexact)):
        return s
    return _where_nan(x, s)


# ---------------------------------------------------------------------------------------------
# The one shared custom VJP.  ``aux`` carries per-call non-differentiable operands (the uniform
# noise of PoissonPass); it is ``None`` for deterministic surrogates.
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _surrogate_spike(sg: "SurrogateFunction", x: Array, aux: Any) -> Array:
    return sg._spike_forward(x, aux)


def _surrogate_spike_fwd(sg: "SurrogateFunction", x: Array, aux: Any):
    return sg._spike_forward(x, aux), (x, aux)


def _surrogate_spike_bwd(sg: "SurrogateFunction", res, g: Array):
    x, aux = res
    # the output dtype may differ from x's (PoissonPass emits float32): cast back
    gx = (g.astype(x.dtype) * sg.derivative(x)).astype(x.dtype)
    return gx, jax.tree_util.tree_map(jnp.zeros_like, aux)


_surrogate_spike.defvjp(_surrogate_spike_fwd, _surrogate_spike_bwd)


# ---------------------------------------------------------------------------------------------
# Argument validation helpers (hyperparameters must be static Python values).
# ---------------------------------------------------------------------------------------------


def _as_real(cls_name: str, name: str, value: Any) -> float:
    """A real, finite hyperparameter as a Python float (the message style of ``snnjax._checks``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{cls_name}: {name} must be a real Python number (a static "
                        f"hyperparameter, not an array or tracer), got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{cls_name}: {name} must be finite, got {value!r}")
    return value


def _as_int(cls_name: str, name: str, value: Any) -> int:
    """An integer hyperparameter (bool rejected) as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{cls_name}: {name} must be an int (not bool or float), got {value!r}")
    return int(value)


def _as_bool(cls_name: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{cls_name}: {name} must be True or False, got {value!r}")
    return bool(value)


def _inv(a: float) -> float:
    """1/a with 1/0 = inf (a zero width parameter then means an unbounded window)."""
    return math.inf if a == 0.0 else 1.0 / a


class SurrogateFunction:
    r"""Base class of all surrogate spike functions.

    Subclasses are ``@dataclasses.dataclass(frozen=True)``: instances are immutable and hashable,
    and two instances are equal when they are of the same class with the same hyperparameters.
    Use them as static ``jax.jit`` arguments freely.

    * ``sg(x)`` — spiking mode (``sg.spiking``): the spike (Heaviside :math:`\Theta(x)` unless the
      class says otherwise) with gradient :math:`\bar g\,\sigma'(x)`; primitive mode: the smooth
      primitive :math:`g(x)` differentiated by ordinary autodiff.
    * ``sg.derivative(x)`` — :math:`\sigma'(x)` as a plain ``jnp`` function.
    * ``sg.primitive(x)`` — :math:`g(x)` as a plain ``jnp`` function.
    * ``sg.set_spiking_mode(flag)`` — returns a **new** instance (instances are immutable; the
      reference mutates in place).

    Everything is computed in ``x``'s dtype (hyperparameters are Python floats, hence weakly typed).
    """

    #: hyperparameter names in the reference's order (``spiking`` excluded)
    _param_names: ClassVar[Tuple[str, ...]] = ()
    #: subset of ``_param_names`` that are real numbers (validated and stored as float)
    _real_params: ClassVar[Tuple[str, ...]] = ()
    #: real parameters that must be > 0 (sharpness, width or height: a value <= 0 flips or
    #: removes the gradient)
    _positive_params: ClassVar[Tuple[str, ...]] = ()
    #: whether the class has a primitive function
    has_primitive: ClassVar[bool] = True
    #: whether spiking mode needs a PRNG key
    stochastic: ClassVar[bool] = False

    spiking: bool

    # -- construction ---------------------------------------------------------------------------

    def __post_init__(self) -> None:
        cls_name = type(self).__name__
        for name in self._real_params:
            object.__setattr__(self, name, _as_real(cls_name, name, getattr(self, name)))
        for name in self._positive_params:
            if not getattr(self, name) > 0:
                raise ValueError(f"{cls_name}: {name} must be > 0, got {getattr(self, name)!r}")
        object.__setattr__(self, "spiking", _as_bool(cls_name, "spiking", self.spiking))
        self._validate()

    def _validate(self) -> None:
        """Class-specific constraints (override)."""

    # -- public API -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def hyperparameters(self) -> dict:
        """Hyperparameters (without ``spiking``) in the reference's order."""
        return {k: getattr(self, k) for k in self._param_names}

    def to_dict(self) -> dict:
        """Golden-file style description: ``{"name": ..., **hyperparameters[, "spiking": False]}``."""
        d = {"name": self.name, **self.hyperparameters}
        if not self.spiking:
            d["spiking"] = False
        return d

    def set_spiking_mode(self, spiking: bool) -> "SurrogateFunction":
        """Return a copy with ``spiking`` set (instances are immutable)."""
        spiking = _as_bool(self.name, "spiking", spiking)
        this = cast(Any, self)   # every concrete surrogate is a dataclass
        fields = {f.name: f for f in dataclasses.fields(this)}
        if fields["spiking"].init:
            return dataclasses.replace(this, spiking=spiking)
        new = dataclasses.replace(this)
        object.__setattr__(new, "spiking", spiking)
        return new

    def __call__(self, x: Any, key: Optional[Array] = None) -> Array:
        """Spike (spiking mode, surrogate gradient) or smooth primitive (``spiking=False``).

        ``key`` is only used by stochastic surrogates (:class:`PoissonPass`) and ignored otherwise.
        """
        x = jnp.asarray(x)
        spike = self.spike_for_state(x, key)
        return self._nan_rule(x, spike) if self.spiking else spike

    def spike_for_state(self, x: Any, key: Optional[Array] = None) -> Array:
        """``sg(x)`` without the NaN rule: where ``x`` is NaN the spike is 0, not NaN (``sg(x)``
        is ``propagate_nan(x, sg.spike_for_state(x))``); same gradient. For a state update whose
        own arithmetic carries a NaN charge (the neurons' NaN-keeping saturation before the
        reset): the NaN test then stays out of a fused backward, which needs the spike only for
        the reset. Primitive mode: ``sg(x)``."""
        x = jnp.asarray(x)
        if not self.spiking:
            return self.primitive(x)
        return _surrogate_spike(self, x, self._aux(x, key))

    def derivative(self, x: Any) -> Array:
        r"""Surrogate derivative :math:`\sigma'(x)` (plain ``jnp``, ``x``'s dtype)."""
        raise NotImplementedError(f"{self.name} does not define a surrogate derivative")

    def primitive(self, x: Any) -> Array:
        r"""Smooth primitive :math:`g(x)` whose autodiff derivative is the surrogate."""
        raise NotImplementedError(
            f"{self.name} has no primitive function (as in the reference); use spiking=True"
        )

    def spike(self, x: Any, key: Optional[Array] = None) -> Array:
        """Spiking-mode forward only (no custom gradient), regardless of ``spiking``."""
        x = jnp.asarray(x)
        return self._nan_rule(x, self._spike_forward(x, self._aux(x, key)))

    # -- hooks ----------------------------------------------------------------------------------

    #: whether ``_spike_forward`` already gives NaN for a NaN ``x`` (no select added)
    _forward_keeps_nan: ClassVar[bool] = False

    def _nan_rule(self, x: Array, spike: Array) -> Array:
        return spike if self._forward_keeps_nan else propagate_nan(x, spike)

    def _aux(self, x: Array, key: Optional[Array]) -> Any:
        return None

    def _spike_forward(self, x: Array, aux: Any) -> Array:
        """The spiking-mode forward; a NaN ``x`` may give anything (the NaN rule is applied
        after it unless ``_forward_keeps_nan``)."""
        return _step(x)
