"""LIF variants (SpikingJelly's ``neuron.lif_variants``): ``GatedLIFNode``, ``KLIFNode``,
``CUBALIFNode``, ``LIAFNode``. The mathematics lives in :mod:`snnjax.steps.lif_variants`.
Shapes: ``step_mode='s'``: ``[N, *] -> [N, *]``; ``'m'``: ``[T, N, *] -> [T, N, *]``.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, cast

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import _checks as C
from snnjax import kernels, steps
from snnjax import surrogate as sg
from snnjax.neuron.base import Array, BaseNode, MemoryModule
from snnjax.neuron.integrate_and_fire import LIFNode


class KLIFNode(BaseNode):
    """KLIF: LIF with a learnable scale ``k`` of the (rectified) membrane.

    ``H = charge_LIF(V, X)`` (``decay_input=True``: ``V + (X - (V - r)) / tau``; ``False``:
    ``V - (V - r) / tau + X``; ``r = v_reset``, 0 with soft reset), ``F = relu(k H)``,
    ``S = sg(F - v_threshold)``. ``scale_reset=False``: ``V' = reset(F, S)``; ``True``: reset of
    ``F / k`` with threshold ``v_threshold / k`` (hard reset value not scaled).

    Args:
      scale_reset: ``True`` / ``False``: reset the unscaled membrane ``F / k`` (default ``False``).
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      decay_input: ``True`` / ``False``: divide the input by ``tau`` (default ``True``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    ``k``: ``nnx.Param``, 0-d float32, initially 1. Initial ``v = v_reset`` (0 with soft reset).
    """

    step_fn = staticmethod(steps.klif_step)
    param_names = BaseNode.param_names + ("tau", "k")
    arg_checks = {"scale_reset": C.boolean, "tau": C.greater(1.0), "decay_input": C.boolean}

    def __init__(self, scale_reset: bool = False, tau: float = 2.0, decay_input: bool = True,
                 v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, *, backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.scale_reset, self.tau, self.decay_input = scale_reset, tau, decay_input
        self.k = nnx.Param(jnp.asarray(1.0, dtype=jnp.float32))

    def step_config(self) -> dict:
        return {**super().step_config(), "decay_input": self.decay_input,
                "scale_reset": self.scale_reset}


class CUBALIFNode(BaseNode):
    """Current-based LIF: ``C' = c_decay C + X``, ``H = v_decay V + C'``, ``S = sg(H - v_threshold)``,
    ``V' = reset(H, S)`` (the current is never reset).

    Args:
      c_decay: retention factor of the synaptic current per step, in ``[0, 1]`` (default ``0.5``).
      v_decay: retention factor of the membrane per step, in ``[0, 1]`` (default ``0.75``).
      v_threshold: firing threshold, a finite number (default ``0.5``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect(alpha=1.0)``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``False``; keyword-only).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``; keyword-only).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``; keyword-only).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    The reference has ``detach_reset``, ``step_mode`` and ``store_v_seq`` only as attributes; here
    they are keyword-only arguments.

    State ``v`` (initial ``v_reset``, 0 with soft reset) and ``c`` (initial 0).
    """

    default_surrogate = functools.partial(sg.Rect, alpha=1.0)
    step_fn = staticmethod(steps.cuba_lif_step)
    param_names = BaseNode.param_names + ("c_decay", "v_decay")
    arg_checks = {"c_decay": C.in_range(0.0, 1.0, low_open=False, high_open=False), "v_decay": C.in_range(0.0, 1.0, low_open=False, high_open=False)}

    def __init__(self, c_decay: float = 0.5, v_decay: float = 0.75, v_threshold: float = 0.5,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 backend: str = "auto"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.c_decay, self.v_decay = c_decay, v_decay
        self.register_memory("c", 0.0)


class LIAFNode(LIFNode):
    """Leaky integrate and analog fire: LIF dynamics whose output is ``act(H - v_threshold)``
    (``threshold_related=True``) or ``act(H)`` instead of the spike (the spike only resets).

    Args:
      act: elementwise JAX activation (e.g. ``jax.nn.relu``), a callable; static (required).
      threshold_related: ``True`` / ``False``: ``act`` sees ``H - v_threshold`` (else ``H``)
        (required).

    Other Parameters:
      tau (float): membrane time constant, ``> 1`` (default ``2.0``). This and the following
        arguments are :class:`LIFNode`'s, forwarded through ``*args, **kwargs`` in this order.
      decay_input (bool): ``True`` / ``False``: divide the input by ``tau`` (default ``True``).
      v_threshold (float): firing threshold, a finite number (default ``1.0``).
      v_reset (float | None): hard-reset value, a finite number ``< v_threshold``; ``None``: soft
        reset ``V = H - S * v_threshold`` (default ``0.0``).
      surrogate_function (Callable | None): spike function with surrogate gradient, a surrogate
        *instance* (:mod:`snnjax.surrogate`; a class is refused) (default ``None``:
        ``Sigmoid()``).
      detach_reset (bool): ``True`` / ``False``: the spike enters the reset without gradient
        (default ``False``).
      step_mode (str): ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step,
        ``x_seq[T, N, *]``) (default ``'s'``).
      store_v_seq (bool): ``True`` / ``False``: record the post-reset membrane of every step in
        ``v_seq`` (``[T, N, *]``) (default ``False``).
      backend (str): sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan``
        elsewhere), ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or
        ``'mosaic'`` (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    The output is analog in both step modes (the reference returns binary spikes in multi-step
    mode without ``store_v_seq``; see ``docs/differences.md``). Output dtype = input dtype.
    """

    step_fn = staticmethod(steps.liaf_step)
    arg_checks = {"act": C.function, "threshold_related": C.boolean}

    def __init__(self, act: Callable[[Array], Array], threshold_related: bool, *args: Any,
                 **kwargs: Any):
        self.act, self.threshold_related = act, threshold_related
        super().__init__(*args, **kwargs)

    def step_config(self) -> dict:
        return {**super().step_config(), "act": self.act,
                "threshold_related": self.threshold_related}


class GatedLIFNode(MemoryModule):
    """GLIF: gated LIF whose leak, input conductance and reset are mixed by learnable gates.

    Multi-step only (``step_mode='m'``). Input ``x_seq``: ``[T, N, C, *]`` with channels on axis 2
    (``C == inplane``), or any ``[T, N, *]`` with ``inplane=None`` (layer-wise gates); the sequence
    length must equal the constructor's ``T``. Output spikes ``[T, N, C, *]`` in the input dtype.

    Per call, from ``V`` (state, initially 0) and a previous spike ``S = 0``, for ``t < T``:
    ``I = X[t] (1 - b (1 - c[t]))``, ``k = 1 - a (1 - q)``,
    ``V = k V - (1 - a) lam + I - k V g S - (1 - g) u S``, ``S = sg(V - theta)``
    (``a, b, g, q, theta, lam, u, c`` the sigmoids of the parameters). The stored ``v`` (and its
    copy ``u``) is the final un-reset membrane; the previous spike restarts at 0 on each call.

    Args:
      T: number of time steps, a positive int (required).
      inplane: channels ``C`` (axis 2 of the input), a positive int, or ``None`` (layer-wise gates)
        (default ``None``).
      init_linear_decay: initial linear decay, in ``(0, 1)`` or ``None``: ``init_v_threshold / (2
        T)`` (default ``None``).
      init_v_subreset: initial sub-reset value, in ``(0, 1)`` or ``None``: ``init_v_threshold``
        (default ``None``).
      init_tau: initial leak gate, in ``(0, 1)`` (default ``0.25``).
      init_v_threshold: initial threshold, in ``(0, 1)`` (default ``0.5``).
      init_conduct: initial input conductance, in ``(0, 1)`` (default ``0.5``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      step_mode: ``'m'`` only (``x_seq[T, N, C, *]``) (default ``'m'``).
      rngs: ``nnx.Rngs`` drawing ``alpha``, ``beta``, ``gamma``; must be given (default ``None``;
        keyword-only).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    Learnable parameters (``nnx.Param``, float32, shape ``P = ()`` or ``(inplane,)``):
    ``alpha``, ``beta``, ``gamma`` ~ ``0.2 (U[0, 1) - 0.5)``; ``tau``, ``v_threshold``,
    ``linear_decay``, ``v_subreset`` the logits of their ``init_*``; ``conduct`` (``(T, *P)``).
    """

    supported_step_modes = ("m",)
    step_fn = staticmethod(steps.gated_lif_step)
    param_names = ("alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset",
                   "conduct")
    arg_checks = {"T": C.length, "inplane": C.optional_positive_int,
                  "surrogate_function": C.surrogate}

    def __init__(self, T: int, inplane: int | None = None, init_linear_decay: float | None = None,
                 init_v_subreset: float | None = None, init_tau: float = 0.25,
                 init_v_threshold: float = 0.5, init_conduct: float = 0.5,
                 surrogate_function: Callable | None = None, step_mode: str = "m", *,
                 rngs: nnx.Rngs | None = None, backend: str = "auto"):
        owner = type(self).__name__
        super().__init__(step_mode, backend)
        self.T, self.inplane = T, inplane
        rngs = cast(nnx.Rngs, C.rngs(owner, "rngs", rngs))   # checked: not None
        self.surrogate_function = sg.Sigmoid() if surrogate_function is None else surrogate_function
        unit = functools.partial(C.in_range(0.0, 1.0), owner)
        init_v_threshold = unit("init_v_threshold", init_v_threshold)
        shape = () if self.inplane is None else (self.inplane,)

        def logit(name: str, value: float, shp: tuple = shape) -> nnx.Param:
            return nnx.Param(jnp.full(shp, -math.log(1.0 / unit(name, value) - 1.0), jnp.float32))

        for name in ("alpha", "beta", "gamma"):
            gate = 0.2 * (jax.random.uniform(rngs.params(), shape, jnp.float32) - 0.5)
            setattr(self, name, nnx.Param(gate))
        self.tau = logit("init_tau", init_tau)
        self.v_threshold = logit("init_v_threshold", init_v_threshold)
        self.linear_decay = logit("init_linear_decay", init_v_threshold / (2 * self.T)
                                  if init_linear_decay is None else init_linear_decay)
        self.v_subreset = logit("init_v_subreset", init_v_threshold if init_v_subreset is None
                                else init_v_subreset)
        self.conduct = logit("init_conduct", init_conduct, (self.T, *shape))
        self.register_memory("v", 0.0)
        self.register_memory("u", 0.0)   # a copy of v (the reference keeps both)

    def step_config(self) -> dict:
        return {"surrogate": self.surrogate_function}

    def step(self, state: dict, x: Any, params: dict | None = None) -> tuple[dict, Array]:
        raise ValueError(f"{type(self).__name__} is multi-step only (its conduct gate depends on "
                         f"the time index); use multi_step(state, x_seq) with x_seq [T, N, *]")

    def _check_input(self, x_seq: Array) -> None:
        owner, shape = type(self).__name__, tuple(x_seq.shape)
        if shape[0] != self.T:
            raise ValueError(f"{owner}: the sequence has {shape[0]} time steps but the layer was "
                             f"built with T={self.T} (one conduct gate per step); x_seq must be "
                             f"[T={self.T}, N, *]")
        if self.inplane is not None and (len(shape) < 3 or shape[2] != self.inplane):
            raise ValueError(f"{owner}: with inplane={self.inplane} the input must be "
                             f"[T, N, C={self.inplane}, *] (channels on axis 2), got shape {shape}")

    def _broadcast(self, p: Array, step_ndim: int, leading: int) -> Array:
        return steps.gated_lif_layout(p, step_ndim, leading, self.inplane is not None)

    def multi_step(self, state: dict, x_seq: Any, params: dict | None = None, *,
                   return_state_seq: bool = False) -> tuple[dict, Array]:
        """``(state {"v", "u"}, x_seq [T, N, *]) -> (state, spikes [T, N, *])``; pure.

        The gated current of the whole sequence (:func:`snnjax.steps.gated_lif_input`), then
        :func:`snnjax.steps.gated_lif_step` over time from ``{"v": state["v"], "s": 0}``. With
        ``return_state_seq=True`` the returned ``v`` (and ``u``) are ``[T, N, *]``.
        """
        x_seq = self._check_sequence(x_seq)
        self._check_input(x_seq)
        p, nd = self._params(params), x_seq.ndim - 1
        v0 = self._conform(state, x_seq[0])["v"]
        current = steps.gated_lif_input(x_seq.astype(v0.dtype), self._broadcast(p["beta"], nd, 0),
                                        self._broadcast(p["conduct"], nd, 1))
        step_params = {k: self._broadcast(p[k], nd, 0) for k in steps.GATED_LIF_STEP_PARAMS}
        seq, out = kernels.multi_step(self.bound_step(), {"v": v0, "s": jnp.zeros_like(v0)},
                                      current, step_params, backend=self.backend,
                                      return_state_seq=return_state_seq)
        return {"v": seq["v"], "u": seq["v"]}, out.astype(x_seq.dtype)


__all__ = ["CUBALIFNode", "GatedLIFNode", "KLIFNode", "LIAFNode"]
