"""Online-learning LIF neurons: OTTT and SLTT (SpikingJelly's ``online_learning`` module).

Both are LIF neurons whose step depends on the training mode, read from ``self.deterministic``
(NNX convention: ``model.train()`` sets it False, ``model.eval()`` True; default False = training,
like a fresh PyTorch module):

* training: the membrane entering each step is detached (no gradient through time via ``V``),
  the spike uses ``surrogate_function``;
* eval: no detach, and the spike is a hard Heaviside step (no gradient) whatever the surrogate.

Multi-step (``step_mode='m'`` or :meth:`multi_step`) is a ``lax.scan`` of that online step, so in
training the gradient of step ``t`` never reaches earlier steps through the membrane. The point
is online training: take the gradient of a per-step loss inside the scan and accumulate it, so
memory does not grow with ``T`` (see ``examples/online_training.py``).
"""
from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp

from snnjax import steps
from snnjax.neuron.base import Array, check_bool
from snnjax.neuron.integrate_and_fire import LIFNode
from snnjax.steps.online import ottt_lif_step, sltt_lif_step


class _OnlineLIFNode(LIFNode):
    """Shared constructor of OTTT/SLTT: LIFNode plus the NNX ``deterministic`` flag."""

    def __init__(self, tau: float, decay_input: bool, v_threshold: float, v_reset: float | None,
                 surrogate_function: Callable | None, detach_reset: bool, step_mode: str,
                 store_v_seq: bool, *, backend: str = "auto", deterministic: bool = False):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset,
                         step_mode, store_v_seq, backend=backend)
        self.deterministic = check_bool("deterministic", deterministic, type(self).__name__)

    @property
    def training(self) -> bool:
        """True unless the module was put in eval mode (``model.eval()``)."""
        return not self.deterministic

    def _static(self) -> dict[str, Any]:
        return dict(surrogate=self.surrogate_function, decay_input=self.decay_input,
                    soft_reset=self.soft_reset, detach_reset=self.detach_reset,
                    training=self.training)


class OTTTLIFNode(_OnlineLIFNode):
    """LIF neuron for Online Training Through Time (OTTT, NeurIPS 2022).

    Defaults differ from :class:`LIFNode`: ``decay_input=False``, ``v_reset=None`` (soft reset),
    ``detach_reset=True``. State ``{"v", "trace"}`` (both start at 0, ``[N, *]``). Per step::

        V' = sg(V[t-1]) (training) or V[t-1] (eval)
        H  = V' - (V' - r) / tau + X[t]      (decay_input=False; r = V_r or 0)
        S  = Theta_sg(H - theta)  (training)  or  Heaviside(H - theta)  (eval)
        V  = H - sg(S) * theta                (soft reset, detach_reset)
        tr = sg((1 - 1/tau) * tr + S)         (training only; eval leaves the trace)

    Output: training -> ``(S, tr)`` (spike with surrogate gradient, trace without); eval -> ``S``.
    Downstream, a weight layer should compute its value from ``S`` and its weight gradient from
    ``tr`` (OTTT's presynaptic trace).
    Shapes: ``'s'``: ``[N, *]``; ``'m'``: ``[T, N, *]`` (a scan of the online step).
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: float | None = None, surrogate_function: Callable | None = None,
                 detach_reset: bool = True, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto", deterministic: bool = False):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset,
                         step_mode, store_v_seq, backend=backend, deterministic=deterministic)

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        dt = steps.state_dtype(x.dtype)
        return {"v": jnp.full(x.shape, self._initial_v(), dt), "trace": jnp.zeros(x.shape, dt)}

    def single_step_functional(self, state: dict, x: Array, params: dict):
        return ottt_lif_step(state, x, params, **self._static())


class SLTTLIFNode(_OnlineLIFNode):
    """LIF neuron for Spatial Learning Through Time (SLTT, ICCV 2023).

    Defaults: ``decay_input=True``, ``v_reset=0.0`` (hard reset), ``detach_reset=True``.
    State ``{"v"}`` (starts at ``v_reset``). Per step::

        V' = sg(V[t-1]) (training) or V[t-1] (eval)
        H  = V' + (X[t] - (V' - V_r)) / tau
        S  = Theta_sg(H - theta)  (training)  or  Heaviside(H - theta)  (eval)
        V  = sg(S) * V_r + (1 - sg(S)) * H

    Output ``S``. Shapes: ``'s'``: ``[N, *]``; ``'m'``: ``[T, N, *]`` (a scan of the online step).
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = True, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto", deterministic: bool = False):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset,
                         step_mode, store_v_seq, backend=backend, deterministic=deterministic)

    def single_step_functional(self, state: dict, x: Array, params: dict):
        return sltt_lif_step(state, x, params, **self._static())


__all__ = ["OTTTLIFNode", "SLTTLIFNode"]
