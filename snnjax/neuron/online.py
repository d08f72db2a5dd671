"""Online-learning LIF neurons: OTTT and SLTT (SpikingJelly's ``online_learning`` module).

Both are LIF neurons whose step depends on the training mode, read from ``self.deterministic``
(NNX convention: ``model.train()`` sets it False, ``model.eval()`` True; default False = training,
like a fresh PyTorch module):

* training: the membrane entering each step is detached (no gradient through time via ``V``),
  the spike uses ``surrogate_function``;
* eval: no detach, and the spike is a hard Heaviside step (no gradient) whatever the surrogate.

Multi-step (``step_mode='m'`` or :meth:`multi_step`) is a scan of that online step, so in
training the gradient of step ``t`` never reaches earlier steps through the membrane. The point
is online training: take the gradient of a per-step loss inside the scan and accumulate it, so
memory does not grow with ``T`` (see ``examples/online_training.py``). The mathematics is in
:mod:`snnjax.steps.online`.
"""
from __future__ import annotations

from typing import Callable

from snnjax import _checks as C
from snnjax import steps
from snnjax.neuron.integrate_and_fire import LIFNode


class OTTTLIFNode(LIFNode):
    """LIF neuron for Online Training Through Time (OTTT, NeurIPS 2022).

    Per step (``r = v_reset``, 0 with soft reset)::

        V' = sg(V[t-1]) (training) or V[t-1] (eval)
        H  = V' - (V' - r) / tau + X[t]      (decay_input=False)
        S  = Theta_sg(H - theta)  (training)  or  Heaviside(H - theta)  (eval)
        V  = H - sg(S) * theta                (soft reset, detach_reset)
        tr = sg((1 - 1/tau) * tr + S)         (training only; eval leaves the trace)

    Output: training -> ``(S, tr)`` (spike with surrogate gradient, trace without); eval -> ``S``.
    Downstream, a weight layer should compute its value from ``S`` and its weight gradient from
    ``tr`` (OTTT's presynaptic trace).

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      decay_input: ``True`` / ``False``: divide the input by ``tau`` (default ``False``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None`` (default here): soft
        reset (default ``None``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``True``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
      deterministic: NNX eval flag, ``True`` / ``False`` (``model.eval()`` sets it; ``False``:
        training) (default ``False``; keyword-only).

    State ``v`` (initial ``v_reset``, 0 with soft reset) and ``trace`` (initial 0).
    """

    step_fn = staticmethod(steps.ottt_lif_step)
    arg_checks = {"deterministic": C.boolean}

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: float | None = None, surrogate_function: Callable | None = None,
                 detach_reset: bool = True, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto", deterministic: bool = False):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset,
                         step_mode, store_v_seq, backend=backend)
        self.deterministic = deterministic
        self.register_memory("trace", 0.0)

    training = property(lambda self: not self.deterministic)   # False after model.eval()

    def step_config(self) -> dict:
        return {**LIFNode.step_config(self), "training": self.training}


class SLTTLIFNode(LIFNode):
    """LIF neuron for Spatial Learning Through Time (SLTT, ICCV 2023).

    Per step::

        V' = sg(V[t-1]) (training) or V[t-1] (eval)
        H  = V' + (X[t] - (V' - V_r)) / tau
        S  = Theta_sg(H - theta)  (training)  or  Heaviside(H - theta)  (eval)
        V  = sg(S) * V_r + (1 - sg(S)) * H

    Output ``S``.

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      decay_input: ``True`` / ``False``: divide the input by ``tau`` (default ``True``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Sigmoid()``).
      detach_reset: ``True`` / ``False``: the spike enters the reset without gradient (default
        ``True``).
      step_mode: ``'s'`` (single step, ``x[N, *]``) or ``'m'`` (multi-step, ``x_seq[T, N, *]``)
        (default ``'s'``).
      store_v_seq: ``True`` / ``False``: record the post-reset membrane of every step in ``v_seq``
        (``[T, N, *]``) (default ``False``).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
      deterministic: NNX eval flag, ``True`` / ``False`` (``model.eval()`` sets it; ``False``:
        training) (default ``False``; keyword-only).

    State ``v`` (initial ``v_reset``).
    """

    step_fn = staticmethod(steps.sltt_lif_step)
    arg_checks = OTTTLIFNode.arg_checks
    training, step_config = OTTTLIFNode.training, OTTTLIFNode.step_config

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = True, step_mode: str = "s", store_v_seq: bool = False,
                 *, backend: str = "auto", deterministic: bool = False):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset,
                         step_mode, store_v_seq, backend=backend)
        self.deterministic = deterministic


__all__ = ["OTTTLIFNode", "SLTTLIFNode"]
