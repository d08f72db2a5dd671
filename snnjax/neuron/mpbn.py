"""Membrane-potential batch normalisation neurons (SpikingJelly's ``mpbn`` module).

*Membrane Potential Batch Normalization for Spiking Neural Networks* (2023); threshold folding
and test-time adaptation from *Threshold Modulation for Online Test-Time Adaptation of Spiking
Neural Networks* (2025). The mathematics is :func:`snnjax.steps.mpbn.mpbn_step`; the batch norm
is a part of the neuron, the ``vbn`` sub-module (:class:`MembraneBatchNorm`).

Train/eval follows NNX: ``model.train()`` / ``model.eval()`` set ``use_running_average``
(False = training: batch statistics, running statistics advance once per time step;
True = eval: running statistics, nothing advances). A fresh module is in training mode, like a
fresh PyTorch module.

Statistics live in ``nnx.BatchStat`` variables (``vbn.running_mean``, ``vbn.running_var``,
``vbn.num_batches_tracked``; after folding ``mu``, ``sigma2``, ``bn_momentum``). They are not
neuron state: ``reset()`` keeps them. The pure API carries them explicitly in
``state["stats"]`` (so ``m.step`` / ``m.multi_step`` never mutate the module); the stateful call
``m(x)`` threads the module's statistics through every step and, in training only, writes them
back. Shapes: ``'s'``: ``[N, C]``, ``[N, C, L]`` or ``[N, C, H, W]``; ``'m'``: with a leading
``T``.
"""
from __future__ import annotations

from typing import Any, Callable, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax.neuron.base import BaseNode, UserMethod
from snnjax.parts.normalisation import MembraneBatchNorm
from snnjax.steps.mpbn import BN_STATS, FOLD_STATS

MOMENTUM = C.in_range(0.0, 1.0, low_open=False, high_open=False)


class MPBNBaseNode(BaseNode):
    """Base of the MPBN neurons: membrane batch norm, learnable threshold, threshold folding.

    Per step (:func:`snnjax.steps.mpbn_step`): the charge ``H = f(V, X)`` (a subclass's
    ``neuronal_charge``; calling ``MPBNBaseNode`` itself raises ``NotImplementedError``), batch
    norm of ``H`` (``vbn``; training: batch statistics, running statistics advance once per
    step; eval: running statistics), the firing threshold (``v_threshold``, ``exp(a)`` per
    channel with ``learnable_vth``, or the folded threshold), and the reset.

    Args:
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
      mpbn: ``True`` / ``False``: normalise the membrane (``vbn``) (default ``True``).
      out_features: channels after a Linear layer (inputs ``[N, C]`` or ``[N, C, L]``), a positive
        int; exactly one of ``out_features``, ``out_channels`` (even with ``mpbn=False``) (default
        ``None``).
      out_channels: channels after a Conv2d (inputs ``[N, C, H, W]``), a positive int; exactly one
        of the two (default ``None``).
      learnable_vth: ``True`` / ``False``: fire at ``exp(a)`` (``a``: ``nnx.Param`` ``[C]``, starts
        at 0) (default ``False``).
      bn_momentum: test-time statistics momentum after :meth:`re_parameterize_v_threshold`, in
        ``[0, 1]`` (default ``0.1``).
      bn_decay_momentum: decay of that momentum, in ``[0, 1]`` (default ``0.94``).
      bn_min_momentum: its lower bound, in ``[0, 1]`` (default ``0.005``).
      backend: ``'auto'`` or ``'scan'``: MPBN reduces over the batch inside the step, so it always
        runs on ``lax.scan`` (default ``'scan'``; keyword-only).
      use_running_average: eval mode, ``True`` / ``False`` (``model.eval()`` sets it) (default
        ``False``; keyword-only).

    State: ``v`` (initial ``v_reset``, 0 with soft reset); the pure API's state adds ``stats``.
    """

    step_fn = staticmethod(steps.mpbn_step)
    arg_checks = {"backend": C.choice(("auto", "scan")), "out_features": C.optional_positive_int,
                  "out_channels": C.optional_positive_int, "bn_decay_momentum": MOMENTUM,
                  "bn_min_momentum": MOMENTUM, **dict.fromkeys(("mpbn", "learnable_vth",
                  "normalize_residual", "running_stats", "use_running_average"), C.boolean)}

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, mpbn: bool = True,
                 out_features: int | None = None, out_channels: int | None = None,
                 learnable_vth: bool = False, bn_momentum: float = 0.1,
                 bn_decay_momentum: float = 0.94, bn_min_momentum: float = 0.005,
                 *, backend: str = "scan", use_running_average: bool = False):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend=backend)
        self.backend = "scan"
        self.out_features, self.out_channels = out_features, out_channels
        if (self.out_features is None) == (self.out_channels is None):
            raise ValueError(f"{type(self).__name__}: specify exactly one of out_features (after a "
                             f"Linear) or out_channels (after a Conv2d), got {out_features=}, "
                             f"{out_channels=}")
        self.num_features = cast(int, self.out_channels or self.out_features)   # one is set
        self.mpbn, self.learnable_vth = mpbn, learnable_vth
        self.vbn = MembraneBatchNorm(self.num_features, out_channels is not None) if mpbn else None
        if self.learnable_vth:  # exp(a) starts at 1 whatever v_threshold is (as the reference)
            self.a = nnx.Param(jnp.zeros((self.num_features,), jnp.float32))
        self.bn_momentum = nnx.BatchStat(jnp.asarray(MOMENTUM(type(self).__name__, "bn_momentum",
                                                              bn_momentum)))
        self.bn_decay_momentum, self.bn_min_momentum = bn_decay_momentum, bn_min_momentum
        self.fold_bn = self.normalize_residual = self.running_stats = False
        self.use_running_average = use_running_average

    @property
    def training(self) -> bool:
        """True unless the module was put in eval mode (``model.eval()``)."""
        return not self.use_running_average

    def re_parameterize_v_threshold(self, normalize_residual: bool = False,
                                    running_stats: bool = False) -> None:
        """Fold the batch norm into a per-channel threshold (in place, one shot).

        ``vth = (theta - beta) sqrt(sigma2 + eps) / gamma + mu``: the BN weight and bias become
        the neuron's parameters ``gamma`` and ``beta``, the running statistics its ``mu`` and
        ``sigma2`` (``nnx.BatchStat``), ``vbn`` is removed, and a learned threshold ``exp(a)``
        becomes the fixed ``v_threshold`` (``[C]``). No-op if there is no batch norm
        (``mpbn=False`` or already folded). ``normalize_residual``: non-firing membranes are
        mapped into the normalised space (makes the folded eval neuron equal the unfolded one
        with hard reset to 0). ``running_stats``: in training, ``mu``/``sigma2`` follow the batch
        statistics with a decaying momentum instead of being replaced by them.
        """
        C.boolean(type(self).__name__, "normalize_residual", normalize_residual)
        C.boolean(type(self).__name__, "running_stats", running_stats)
        if (vbn := self.vbn) is None:
            return
        if self.learnable_vth:  # an array threshold: bypasses the number check of v_threshold
            nnx.Module.__setattr__(self, "v_threshold",
                                   nnx.data(jnp.exp(jax.lax.stop_gradient(self.a.get_value()))))
            del self.a
            self.learnable_vth = False
        self.normalize_residual, self.running_stats = normalize_residual, running_stats
        self.fold_bn = True
        self.mu, self.sigma2 = (nnx.BatchStat(vbn.running_mean.get_value()),
                                nnx.BatchStat(vbn.running_var.get_value()))
        self.gamma, self.beta = nnx.Param(vbn.weight.get_value()), nnx.Param(vbn.bias.get_value())
        self.eps, self.vbn = vbn.eps, None

    def params(self) -> dict:
        """``v_threshold``, ``v_reset`` (and ``tau``), plus per path: ``vbn_weight``, ``vbn_bias``,
        ``vbn_eps``, ``vbn_momentum`` (BN); ``a`` (learnable threshold); ``gamma``, ``beta``,
        ``eps``, ``bn_decay_momentum``, ``bn_min_momentum`` (folded)."""
        p = {**super().params(), **({"a": self.a} if self.learnable_vth else {})}
        if self.vbn is not None:
            p.update(vbn_weight=self.vbn.weight, vbn_bias=self.vbn.bias, vbn_eps=self.vbn.eps,
                     vbn_momentum=self.vbn.momentum)
        if self.fold_bn:
            p.update(gamma=self.gamma, beta=self.beta, eps=self.eps,
                     bn_decay_momentum=self.bn_decay_momentum, bn_min_momentum=self.bn_min_momentum)
        return {k: v.get_value() if isinstance(v, nnx.Variable) else v for k, v in p.items()}

    def _stat_vars(self) -> dict:
        """The statistics' variables: ``vbn``'s; after folding ``mu``, ``sigma2``,
        ``bn_momentum``."""
        if self.vbn is not None:
            return {k: getattr(self.vbn, k) for k in BN_STATS}
        return {k: getattr(self, k) for k in FOLD_STATS} if self.fold_bn else {}

    def stats(self) -> dict:
        """Current statistics (the ``state["stats"]`` the pure API threads through the steps)."""
        return {k: var.get_value() for k, var in self._stat_vars().items()}

    def step_config(self) -> dict:
        config = {**super().step_config(), "bn": self.vbn is not None, "folded": self.fold_bn,
                  "learnable_vth": self.learnable_vth, "training": self.training,
                  "normalize_residual": self.normalize_residual,
                  "running_stats": self.running_stats}
        if type(self).step_fn is steps.mpbn_step:  # a subclass's own charge
            config["charge"] = UserMethod(self, "neuronal_charge")
        return config

    # -- the statistics in the state protocol ---------------------------------------------------

    def _pack(self, memories: dict) -> dict:
        return {**memories, "stats": self.stats()}

    def _unpack(self, state: dict) -> dict:
        return {k: state[k] for k in ("v",) if k in state}   # "stats" travel beside

    def _conform(self, state: dict, x: Any, **kwargs: Any) -> dict:
        """Also checks the input; the given ``stats`` (default: the module's) in the state dtype."""
        self._check_input(x)
        out = super()._conform(state, x, **kwargs)
        stats = {k: jnp.asarray(a) for k, a in state.get("stats", out["stats"]).items()}
        return {**out, "stats": {k: a.astype(out["v"].dtype) if jnp.issubdtype(
            a.dtype, jnp.floating) else a for k, a in stats.items()}}

    def _store(self, state: dict, seq: Any = None, *, append: bool = False) -> None:
        super()._store(state, seq, append=append)
        if self.training:  # the reference's forward commits the statistics in training only
            for k, var in self._stat_vars().items():
                var.set_value(state["stats"][k])

    def _check_input(self, x: Any) -> None:
        owner, shape = type(self).__name__, tuple(np.shape(x))
        per_channel = self.vbn is not None or self.fold_bn or self.learnable_vth
        if len(shape) < 2 or (self.out_channels is not None and per_channel and len(shape) != 4):
            raise ValueError(f"{owner} expects per-step input [N, C, *] ([N, C, H, W] with "
                             f"out_channels; multi-step: a leading T), got per-step shape {shape}")
        if per_channel and shape[1] != self.num_features:
            raise ValueError(f"{owner}: input has {shape[1]} channels on axis 1 but the neuron "
                             f"was built for {self.num_features} (out_features/out_channels)")
        if self.vbn is not None and self.training and np.prod(shape) == shape[1]:
            raise ValueError(f"{owner}: batch norm in training needs more than one value per "
                             f"channel, got per-step input shape {shape}")


class MPBNLIFNode(MPBNBaseNode):
    """LIF neuron with batch normalisation of the charged membrane at every step.

    ``decay_input=False`` by default (unlike :class:`LIFNode`). Per step (``r = v_reset`` or 0)::

        H = V - (V - r) / tau + X            (decay_input=False; V + (X - (V - r)) / tau if True)
        H = BN(H)                            (batch stats in training, running stats in eval)
        S = Theta_sg(H - vth)                (vth: v_threshold, exp(a), or the folded threshold)
        V = S * v_reset + (1 - S) * H        (soft reset: V = H - S * v_threshold)

    The state stored is the normalised membrane (:func:`snnjax.steps.mpbn_lif_step`).

    Args:
      tau: membrane time constant, ``> 1`` (default ``2.0``).
      decay_input: ``True`` / ``False``: divide the input by ``tau`` (default ``False``).
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
      mpbn: ``True`` / ``False``: normalise the membrane (``vbn``) (default ``True``).
      out_features: channels after a Linear layer (inputs ``[N, C]`` or ``[N, C, L]``), a positive
        int; exactly one of ``out_features``, ``out_channels`` (even with ``mpbn=False``) (default
        ``None``).
      out_channels: channels after a Conv2d (inputs ``[N, C, H, W]``), a positive int; exactly one
        of the two (default ``None``).
      learnable_vth: ``True`` / ``False``: fire at ``exp(a)`` (``a``: ``nnx.Param`` ``[C]``, starts
        at 0) (default ``False``).
      bn_momentum: test-time statistics momentum after :meth:`re_parameterize_v_threshold`, in
        ``[0, 1]`` (default ``0.1``).
      bn_decay_momentum: decay of that momentum, in ``[0, 1]`` (default ``0.94``).
      bn_min_momentum: its lower bound, in ``[0, 1]`` (default ``0.005``).
      backend: ``'auto'`` or ``'scan'``: MPBN reduces over the batch inside the step, so it always
        runs on ``lax.scan`` (default ``'scan'``; keyword-only).
      use_running_average: eval mode, ``True`` / ``False`` (``model.eval()`` sets it) (default
        ``False``; keyword-only).
    """

    step_fn = staticmethod(steps.mpbn_lif_step)
    param_names = MPBNBaseNode.param_names + ("tau",)
    arg_checks = {"tau": C.greater(1.0), "decay_input": C.boolean}

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 mpbn: bool = True, out_features: int | None = None,
                 out_channels: int | None = None, learnable_vth: bool = False,
                 bn_momentum: float = 0.1, bn_decay_momentum: float = 0.94,
                 bn_min_momentum: float = 0.005, *, backend: str = "scan",
                 use_running_average: bool = False):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, mpbn, out_features, out_channels, learnable_vth,
                         bn_momentum, bn_decay_momentum, bn_min_momentum, backend=backend,
                         use_running_average=use_running_average)
        self.tau, self.decay_input = tau, decay_input

    def step_config(self) -> dict:
        return {**super().step_config(), "decay_input": self.decay_input}


__all__ = ["MPBNBaseNode", "MPBNLIFNode", "MembraneBatchNorm"]
