"""LIF variants (SpikingJelly's ``neuron.lif_variants``): ``GatedLIFNode``, ``KLIFNode``,
``CUBALIFNode``, ``LIAFNode``. The mathematics lives in :mod:`snnjax.steps.lif_variants`."""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import kernels, steps
from snnjax import surrogate as sg
from snnjax.neuron.base import (
    ModuleStep,
    Array, BaseNode, MemoryModule, check_bool, check_greater, check_number, check_surrogate,
)
from snnjax.neuron.integrate_and_fire import LIFNode
from snnjax.steps import lif_variants as lv


class KLIFNode(BaseNode):
    """KLIF: LIF with a learnable scale ``k`` of the (rectified) membrane.

    ``H = charge_LIF(V, X)`` (``decay_input=True``: ``V + (X - (V - r)) / tau``; ``False``:
    ``V - (V - r) / tau + X``; ``r = v_reset``, 0 with soft reset), ``F = relu(k H)``,
    ``S = sg(F - v_threshold)``. ``scale_reset=False``: ``V' = reset(F, S)``; ``True``: reset of
    ``F / k`` with threshold ``v_threshold / k`` (hard reset value not scaled).
    ``k``: ``nnx.Param``, 0-d float32, initially 1. Initial ``v = v_reset`` (0 with soft reset).
    Shapes: ``step_mode='s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
    """

    def __init__(self, scale_reset: bool = False, tau: float = 2.0, decay_input: bool = True,
                 v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.scale_reset = check_bool("scale_reset", scale_reset, owner)
        self.tau = check_greater("tau", tau, 1.0, owner)
        self.decay_input = check_bool("decay_input", decay_input, owner)
        self.k = nnx.Param(jnp.asarray(1.0, dtype=jnp.float32))

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau, "k": self.k.get_value()}

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return lv.klif_step(state, x, params, surrogate=self.surrogate_function,
                            decay_input=self.decay_input, soft_reset=self.soft_reset,
                            detach_reset=self.detach_reset, scale_reset=self.scale_reset)


class CUBALIFNode(BaseNode):
    """Current-based LIF: ``C' = c_decay C + X``, ``H = v_decay V + C'``, ``S = sg(H - v_threshold)``,
    ``V' = reset(H, S)`` (the current is never reset).

    ``c_decay`` and ``v_decay`` are retention factors (not time constants). Defaults follow the
    reference: ``v_threshold=0.5``, surrogate ``Rect(alpha=1.0)``. The reference has no
    ``detach_reset`` / ``step_mode`` / ``store_v_seq`` arguments (only attributes); here they are
    keyword-only. State ``v`` (initial ``v_reset``, 0 with soft reset) and ``c`` (initial 0).
    """

    def __init__(self, c_decay: float = 0.5, v_decay: float = 0.75, v_threshold: float = 0.5,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 backend: str = "auto"):
        owner = type(self).__name__
        if surrogate_function is None:
            surrogate_function = sg.Rect(alpha=1.0)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.c_decay = check_number("c_decay", c_decay, owner)
        self.v_decay = check_number("v_decay", v_decay, owner)

    def params(self) -> dict:
        return {**super().params(), "c_decay": self.c_decay, "v_decay": self.v_decay}

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        dtype = steps.state_dtype(x.dtype)
        return {"v": jnp.full(x.shape, self._initial_v(), dtype), "c": jnp.zeros(x.shape, dtype)}

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return lv.cuba_lif_step(state, x, params, surrogate=self.surrogate_function,
                                soft_reset=self.soft_reset, detach_reset=self.detach_reset)


class LIAFNode(LIFNode):
    """Leaky integrate and analog fire: LIF dynamics whose output is ``act(H - v_threshold)``
    (``threshold_related=True``) or ``act(H)`` instead of the spike (the spike only resets).

    ``LIAFNode(act, threshold_related, *args, **kwargs)``; the remaining arguments are
    :class:`LIFNode`'s (``tau=2.0``, ``decay_input=True``, ``v_threshold=1.0``, ``v_reset=0.0``,
    ...). ``act`` must be an elementwise JAX function (e.g. ``jax.nn.relu``). The output is analog in
    both step modes (the reference returns binary spikes in multi-step mode without
    ``store_v_seq``; see ``docs/differences.md``). Output dtype = input dtype.
    """

    def __init__(self, act: Callable[[Array], Array], threshold_related: bool, *args: Any,
                 **kwargs: Any):
        owner = type(self).__name__
        if not callable(act):
            raise TypeError(f"{owner}: act must be a callable activation (e.g. jax.nn.relu), "
                            f"got {act!r}")
        threshold_related = check_bool("threshold_related", threshold_related, owner)
        super().__init__(*args, **kwargs)
        self.act = act
        self.threshold_related = threshold_related

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        return lv.liaf_step(state, x, params, act=self.act,
                            threshold_related=self.threshold_related,
                            surrogate=self.surrogate_function, decay_input=self.decay_input,
                            soft_reset=self.soft_reset, detach_reset=self.detach_reset)


def _logit(p: float) -> float:
    return -math.log(1.0 / p - 1.0)


def _check_unit(name: str, value: Any, owner: str) -> float:
    value = check_number(name, value, owner)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{owner}: {name} must be in (0, 1) (it is stored as a logit), got {value}")
    return value


class GatedLIFNode(MemoryModule):
    """GLIF: gated LIF whose leak, input conductance and reset are mixed by learnable gates.

    Multi-step only (``step_mode='m'``). Input ``x_seq``: ``[T, N, C, *]`` with channels on axis 2
    (``C == inplane``), or any ``[T, N, *]`` with ``inplane=None`` (layer-wise gates); the sequence
    length must equal the constructor's ``T``. Output spikes ``[T, N, C, *]`` in the input dtype.

    Learnable parameters (``nnx.Param``, float32, shape ``P = ()`` or ``(inplane,)``; the model uses
    their sigmoids): ``alpha``, ``beta``, ``gamma`` ~ ``0.2 (U[0, 1) - 0.5)`` drawn from ``rngs``;
    ``tau = logit(init_tau)``, ``v_threshold = logit(init_v_threshold)``,
    ``linear_decay = logit(init_linear_decay)`` (default ``init_v_threshold / (2 T)``),
    ``v_subreset = logit(init_v_subreset)`` (default ``init_v_threshold``), and ``conduct``
    (shape ``(T, *P)``) ``= logit(init_conduct)``.

    Per call, from ``V`` (state, initially 0) and a previous spike ``S = 0``, for ``t < T``:
    ``I = X[t] (1 - b (1 - c[t]))``, ``k = 1 - a (1 - q)``,
    ``V = k V - (1 - a) lam + I - k V g S - (1 - g) u S``, ``S = sg(V - theta)``
    (``a, b, g, q, theta, lam, u, c`` the sigmoids of the parameters). The stored ``v`` (and its
    copy ``u``) is the final un-reset membrane; the previous spike restarts at 0 on each call.
    """

    supported_step_modes = ("m",)

    def __init__(self, T: int, inplane: int | None = None, init_linear_decay: float | None = None,
                 init_v_subreset: float | None = None, init_tau: float = 0.25,
                 init_v_threshold: float = 0.5, init_conduct: float = 0.5,
                 surrogate_function: Callable | None = None, step_mode: str = "m", *,
                 rngs: nnx.Rngs | None = None, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(step_mode=step_mode, backend=backend)
        if isinstance(T, bool) or not isinstance(T, (numbers.Integral, np.integer)) or T < 1:
            raise ValueError(f"{owner}: T must be a positive int (the number of time steps), got {T!r}")
        if inplane is not None and (isinstance(inplane, bool)
                                    or not isinstance(inplane, (numbers.Integral, np.integer))
                                    or inplane < 1):
            raise ValueError(f"{owner}: inplane must be None (layer-wise gates) or a positive int "
                             f"(number of channels), got {inplane!r}")
        if rngs is None:
            raise TypeError(f"{owner}: rngs is required (e.g. rngs=nnx.Rngs(0)) to draw the initial "
                            f"alpha, beta, gamma")
        self.T = int(T)
        self.inplane = None if inplane is None else int(inplane)
        self.surrogate_function = check_surrogate(
            sg.Sigmoid() if surrogate_function is None else surrogate_function, owner)
        init_tau = _check_unit("init_tau", init_tau, owner)
        init_v_threshold = _check_unit("init_v_threshold", init_v_threshold, owner)
        init_conduct = _check_unit("init_conduct", init_conduct, owner)
        init_linear_decay = _check_unit(
            "init_linear_decay",
            init_v_threshold / (2 * self.T) if init_linear_decay is None else init_linear_decay,
            owner)
        init_v_subreset = _check_unit(
            "init_v_subreset", init_v_threshold if init_v_subreset is None else init_v_subreset,
            owner)
        shape = () if self.inplane is None else (self.inplane,)

        def uniform_gate() -> Array:
            return 0.2 * (jax.random.uniform(rngs.params(), shape, jnp.float32) - 0.5)

        def const(value: float, shp: tuple = shape) -> nnx.Param:
            return nnx.Param(jnp.full(shp, _logit(value), jnp.float32))

        self.alpha = nnx.Param(uniform_gate())
        self.beta = nnx.Param(uniform_gate())
        self.gamma = nnx.Param(uniform_gate())
        self.tau = const(init_tau)
        self.v_threshold = const(init_v_threshold)
        self.linear_decay = const(init_linear_decay)
        self.v_subreset = const(init_v_subreset)
        self.conduct = const(init_conduct, (self.T, *shape))

    _PARAMS = ("alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset",
               "conduct")

    def params(self) -> dict:
        return {name: getattr(self, name).get_value() for name in self._PARAMS}

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        zeros = jnp.zeros(x.shape, steps.state_dtype(x.dtype))
        return {"v": zeros, "u": zeros}

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        """One step on the gated current ``x = I[t]`` with state ``{"v", "s"}`` (see
        :func:`snnjax.steps.lif_variants.gated_lif_step`); ``params`` already broadcast."""
        return lv.gated_lif_step(state, x, params, surrogate=self.surrogate_function)

    def step(self, state: dict, x: Array, params: dict | None = None) -> tuple[dict, Array]:
        raise ValueError(f"{type(self).__name__} is multi-step only (its conduct gate depends on "
                         f"the time index); use multi_step(state, x_seq) with x_seq [T, N, *]")

    def _check_input(self, x_seq: Array) -> None:
        owner = type(self).__name__
        shape = tuple(np.shape(x_seq))
        if len(shape) < 2:
            raise ValueError(f"{owner}: input must be [T, N, *], got shape {shape}")
        if shape[0] != self.T:
            raise ValueError(f"{owner}: the sequence has {shape[0]} time steps but the layer was "
                             f"built with T={self.T} (one conduct gate per step); x_seq must be "
                             f"[T={self.T}, N, *]")
        if self.inplane is not None and (len(shape) < 3 or shape[2] != self.inplane):
            raise ValueError(f"{owner}: with inplane={self.inplane} the input must be "
                             f"[T, N, C={self.inplane}, *] (channels on axis 2), got shape {shape}")

    def _broadcast(self, p: Array, step_ndim: int, leading: int) -> Array:
        """Channel-wise ``(*lead, C)`` -> ``(*lead, 1, C, 1, ...)`` for a ``[N, C, *]`` step."""
        p = jnp.asarray(p)
        if self.inplane is None:  # layer-wise: a scalar (per step for conduct)
            return p.reshape(p.shape + (1,) * step_ndim) if leading else p
        lead, c = p.shape[:leading], p.shape[leading:]
        return p.reshape(lead + (1,) + c + (1,) * (step_ndim - 2))

    def multi_step(self, state: dict, x_seq: Array, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """``(state {"v", "u"}, x_seq [T, N, *]) -> (state, spikes [T, N, *])``; pure.

        With ``return_state_seq=True`` the returned ``v`` (and ``u``) are ``[T, N, *]``.
        """
        self._check_input(x_seq)
        x_seq = jnp.asarray(x_seq)
        p = self._params(params)
        step_ndim = x_seq.ndim - 1
        dtype = steps.state_dtype(x_seq.dtype)
        current = lv.gated_lif_input(x_seq.astype(dtype), self._broadcast(p["beta"], step_ndim, 0),
                                     self._broadcast(p["conduct"], step_ndim, 1))
        step_params = {k: self._broadcast(p[k], step_ndim, 0) for k in lv.GATED_LIF_STEP_PARAMS}
        v0 = jnp.asarray(state["v"]).astype(dtype)
        carry = {"v": v0, "s": jnp.zeros_like(v0)}
        seq, out = kernels.multi_step(ModuleStep(self, self.single_step_functional), carry,
                                      current, step_params,
                                      backend=self.backend, return_state_seq=return_state_seq)
        return {"v": seq["v"], "u": seq["v"]}, out.astype(x_seq.dtype)


__all__ = ["CUBALIFNode", "GatedLIFNode", "KLIFNode", "LIAFNode"]
