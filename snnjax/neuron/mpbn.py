"""Membrane-potential batch normalisation neurons (SpikingJelly's ``mpbn`` module).

*Membrane Potential Batch Normalization for Spiking Neural Networks* (2023); threshold folding
and test-time adaptation from *Threshold Modulation for Online Test-Time Adaptation of Spiking
Neural Networks* (2025). The mathematics is :func:`snnjax.steps.mpbn.mpbn_step`.

Train/eval follows NNX: ``model.train()`` / ``model.eval()`` set ``use_running_average``
(False = training: batch statistics, running statistics advance once per time step;
True = eval: running statistics, nothing advances). A fresh module is in training mode, like a
fresh PyTorch module.

Statistics live in ``nnx.BatchStat`` variables (``vbn.running_mean``, ``vbn.running_var``,
``vbn.num_batches_tracked``; after folding ``mu``, ``sigma2``, ``bn_momentum``). They are not
neuron state: ``reset()`` keeps them. The pure API carries them explicitly in
``state["stats"]`` (so ``m.step`` / ``m.multi_step`` never mutate the module); the stateful call
``m(x)`` snapshots them, threads them through every step and, in training only, writes them back.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax import steps
from snnjax.neuron.base import (
    Array, BaseNode, check_bool, check_choice, check_greater, check_number, _shape_str,
)
from snnjax.steps.integrate_and_fire import lif_charge
from snnjax.steps.mpbn import BN_STATS, mpbn_step


def _check_count(name: str, value: Any, owner: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int or None, got {value!r}")
    return int(value)


class MembraneBatchNorm(nnx.Module):
    """The ``vbn`` sub-module: PyTorch ``BatchNorm1d``/``BatchNorm2d`` state with PyTorch defaults.

    Parameters ``weight`` (init 1) and ``bias`` (init 0), ``[C]`` float32; statistics
    ``running_mean`` (0), ``running_var`` (1), ``num_batches_tracked`` (0). ``eps = 1e-5``,
    ``momentum = 0.1`` (PyTorch convention: weight of the new batch statistic). The
    normalisation itself is done inside the neuron's step.
    """

    def __init__(self, num_features: int, spatial: bool):
        self.num_features = num_features
        self.spatial = spatial  # BatchNorm2d: [N, C, H, W]; BatchNorm1d: [N, C] or [N, C, L]
        self.eps = 1e-5
        self.momentum = 0.1
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))


class MPBNBaseNode(BaseNode):
    """Base of the MPBN neurons: membrane batch norm, learnable threshold, threshold folding.

    Subclasses define :meth:`neuronal_charge` (``H = f(V, X)``); this class adds, per step:
    batch norm of ``H`` (``vbn``; training: batch statistics, running statistics advance once
    per step; eval: running statistics), the firing threshold (constructor ``v_threshold``,
    ``exp(a)`` per channel with ``learnable_vth``, or the folded threshold), and the reset.
    See :mod:`snnjax.steps.mpbn` for the equations.

    Exactly one of ``out_features`` (after a Linear layer: inputs ``[N, C]`` or ``[N, C, L]``)
    and ``out_channels`` (after a Conv2d: ``[N, C, H, W]``) must be given, even with
    ``mpbn=False``. ``bn_momentum``, ``bn_decay_momentum``, ``bn_min_momentum`` drive the
    test-time statistics after :meth:`re_parameterize_v_threshold` (not the BN layer).
    MPBN reduces over the batch inside the step, so it always runs on the ``'scan'`` engine.
    """

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, mpbn: bool = True,
                 out_features: int | None = None, out_channels: int | None = None,
                 learnable_vth: bool = False, bn_momentum: float = 0.1,
                 bn_decay_momentum: float = 0.94, bn_min_momentum: float = 0.005,
                 *, backend: str = "scan", use_running_average: bool = False):
        owner = type(self).__name__
        check_choice("backend", backend, ("auto", "scan"), owner)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, backend="scan")
        out_features = _check_count("out_features", out_features, owner)
        out_channels = _check_count("out_channels", out_channels, owner)
        if (out_features is None) == (out_channels is None):
            raise ValueError(f"{owner}: specify exactly one of out_features (after a Linear "
                             f"layer) or out_channels (after a Conv2d layer), got "
                             f"out_features={out_features}, out_channels={out_channels}")
        self.out_features = out_features
        self.out_channels = out_channels
        self.num_features = out_channels if out_channels is not None else out_features
        self.mpbn = check_bool("mpbn", mpbn, owner)
        self.vbn = MembraneBatchNorm(self.num_features, out_channels is not None) if mpbn else None
        self.learnable_vth = check_bool("learnable_vth", learnable_vth, owner)
        if self.learnable_vth:
            # threshold exp(a) starts at 1 whatever v_threshold is (as the reference)
            self.a = nnx.Param(jnp.zeros((self.num_features,), jnp.float32))
        self.bn_momentum = nnx.BatchStat(jnp.asarray(check_number("bn_momentum", bn_momentum,
                                                                  owner)))
        self.bn_decay_momentum = check_number("bn_decay_momentum", bn_decay_momentum, owner)
        self.bn_min_momentum = check_number("bn_min_momentum", bn_min_momentum, owner)
        self.fold_bn = False
        self.normalize_residual = False
        self.running_stats = False
        # filled by re_parameterize_v_threshold (declared as data so Variables can replace None)
        self.mu = nnx.data(None)
        self.sigma2 = nnx.data(None)
        self.gamma = nnx.data(None)
        self.beta = nnx.data(None)
        self.eps = None
        self.use_running_average = check_bool("use_running_average", use_running_average, owner)

    @property
    def training(self) -> bool:
        """True unless the module was put in eval mode (``model.eval()``)."""
        return not self.use_running_average

    # -- folding --------------------------------------------------------------------------------

    def re_parameterize_v_threshold(self, normalize_residual: bool = False,
                                    running_stats: bool = False) -> None:
        """Fold the batch norm into a per-channel threshold (in place, one shot).

        ``vth = (theta - beta) sqrt(sigma2 + eps) / gamma + mu``: the BN weight and bias become
        the neuron's parameters ``gamma`` and ``beta``, the running statistics its ``mu`` and
        ``sigma2``, ``vbn`` is removed, and a learned threshold ``exp(a)`` becomes the fixed
        ``v_threshold`` (``[C]``). No-op if there is no batch norm (``mpbn=False`` or already
        folded). ``normalize_residual``: non-firing membranes are mapped into the normalised
        space (makes the folded eval neuron equal the unfolded one with hard reset to 0).
        ``running_stats``: in training, ``mu``/``sigma2`` follow the batch statistics with a
        decaying momentum instead of being replaced by them.
        """
        owner = type(self).__name__
        normalize_residual = check_bool("normalize_residual", normalize_residual, owner)
        running_stats = check_bool("running_stats", running_stats, owner)
        vbn = self.vbn
        if vbn is None:
            return
        self.fold_bn = True
        if self.learnable_vth:
            self.v_threshold = nnx.data(jnp.exp(jax.lax.stop_gradient(self.a.get_value())))
            del self.a
            self.learnable_vth = False
        self.normalize_residual = normalize_residual
        self.running_stats = running_stats
        self.mu = nnx.BatchStat(vbn.running_mean.get_value())
        self.sigma2 = nnx.BatchStat(vbn.running_var.get_value())
        self.gamma = nnx.Param(vbn.weight.get_value())
        self.beta = nnx.Param(vbn.bias.get_value())
        self.eps = vbn.eps
        self.vbn = None

    # -- pure API -------------------------------------------------------------------------------

    def params(self) -> dict:
        p = {"v_threshold": self.v_threshold,
             "v_reset": 0.0 if self.v_reset is None else self.v_reset}
        if self.vbn is not None:
            p.update(vbn_weight=self.vbn.weight.get_value(), vbn_bias=self.vbn.bias.get_value(),
                     vbn_eps=self.vbn.eps, vbn_momentum=self.vbn.momentum)
        if self.learnable_vth:
            p["a"] = self.a.get_value()
        if self.fold_bn:
            p.update(gamma=self.gamma.get_value(), beta=self.beta.get_value(), eps=self.eps,
                     bn_decay_momentum=self.bn_decay_momentum,
                     bn_min_momentum=self.bn_min_momentum)
        return p

    def stats(self) -> dict:
        """Current statistics (the ``state["stats"]`` the pure API threads through the steps)."""
        s = {}
        if self.vbn is not None:
            s.update({k: getattr(self.vbn, k).get_value() for k in BN_STATS})
        if self.fold_bn:
            s.update(mu=self.mu.get_value(), sigma2=self.sigma2.get_value(),
                     bn_momentum=self.bn_momentum.get_value())
        return s

    def init_state(self, x: Array) -> dict:
        """``{"v": v_reset (0 with soft reset) [N, C, *], "stats": current statistics}``."""
        x = jnp.asarray(x)
        dt = steps.state_dtype(x.dtype)
        stats = {k: (jnp.asarray(a, dt) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                     else jnp.asarray(a)) for k, a in self.stats().items()}
        return {"v": jnp.full(x.shape, self._initial_v(), dt), "stats": stats}

    def _check_input(self, x: Array) -> None:
        owner = type(self).__name__
        shape = tuple(np.shape(x))
        per_channel = self.vbn is not None or self.fold_bn or self.learnable_vth
        if self.out_channels is not None and per_channel and len(shape) != 4:
            raise ValueError(f"{owner}(out_channels=...) expects per-step input [N, C, H, W] "
                             f"(multi-step [T, N, C, H, W]), got per-step shape {shape}")
        if len(shape) < 2:
            raise ValueError(f"{owner} expects per-step input [N, C, *], got shape {shape}")
        if per_channel and shape[1] != self.num_features:
            raise ValueError(f"{owner}: input has {shape[1]} channels on axis 1 but the neuron "
                             f"was built for {self.num_features} (out_features/out_channels)")
        if self.vbn is not None and self.training and shape[0] * int(np.prod(shape[2:])) == 1:
            raise ValueError(f"{owner}: batch norm in training needs more than one value per "
                             f"channel, got per-step input shape {shape}")

    def single_step_functional(self, state: dict, x: Array, params: dict) -> tuple[dict, Array]:
        self._check_input(x)
        return mpbn_step(state, x, params, charge=self.neuronal_charge,
                         surrogate=self.surrogate_function, soft_reset=self.soft_reset,
                         detach_reset=self.detach_reset, bn=self.vbn is not None,
                         folded=self.fold_bn, learnable_vth=self.learnable_vth,
                         normalize_residual=self.normalize_residual,
                         running_stats=self.running_stats, training=self.training)

    # -- stateful API ---------------------------------------------------------------------------

    def _stored_v(self, x: Array) -> Array:
        x = jnp.asarray(x)
        expected = jnp.full(x.shape, self._initial_v(), steps.state_dtype(x.dtype))
        state = self.memory.get_value()
        if state is None:
            return expected
        if np.shape(state["v"]) != x.shape:
            raise ValueError(
                f"{type(self).__name__}: the stored state has shapes {_shape_str(state)} but this "
                f"input needs v {x.shape}. Call snnjax.functional.reset_net(model) (or this "
                f"module's .reset()) before feeding a batch of another shape.")
        return state["v"].astype(expected.dtype)

    def _commit(self, stats: dict) -> None:
        """Write the advanced statistics back (training only, as the reference)."""
        if not self.training:
            return
        for k, val in stats.items():
            var = getattr(self.vbn, k) if k in BN_STATS else getattr(self, k)
            var.set_value(val)

    def _record(self, v_seq: Array | None, append: bool) -> None:
        if not self.store_v_seq:
            self.state_seq.set_value(None)
            return
        seq = self.state_seq.get_value()
        if append and seq is not None and seq["v"].shape[1:] == v_seq.shape[1:] \
                and seq["v"].dtype == v_seq.dtype:
            v_seq = jnp.concatenate([seq["v"], v_seq])
        self.state_seq.set_value({"v": v_seq})

    def single_step_forward(self, x: Array) -> Array:
        if "s" not in self.supported_step_modes:
            raise ValueError(f"{type(self).__name__} supports step_mode in "
                             f"{self.supported_step_modes} only")
        state = {"v": self._stored_v(x), "stats": self.init_state(x)["stats"]}
        state, out = self.step(state, x)
        self.memory.set_value({"v": state["v"]})
        self._commit(state["stats"])
        self._record(state["v"][None], append=True)
        return out

    def multi_step_forward(self, x_seq: Array) -> Array:
        self._check_sequence(x_seq)
        x_seq = jnp.asarray(x_seq)
        state = {"v": self._stored_v(x_seq[0]), "stats": self.init_state(x_seq[0])["stats"]}
        seq, out = self.multi_step(state, x_seq, return_state_seq=True)
        final = jax.tree_util.tree_map(lambda a: a[-1], seq)
        self.memory.set_value({"v": final["v"]})
        self._commit(final["stats"])
        self._record(seq["v"], append=False)
        return out


class MPBNLIFNode(MPBNBaseNode):
    """LIF neuron with batch normalisation of the charged membrane at every step.

    ``decay_input=False`` by default (unlike :class:`LIFNode`). Per step (``r = v_reset`` or 0)::

        H = V - (V - r) / tau + X            (decay_input=False; V + (X - (V - r)) / tau if True)
        H = BN(H)                            (batch stats in training, running stats in eval)
        S = Theta_sg(H - vth)                (vth: v_threshold, exp(a), or the folded threshold)
        V = S * v_reset + (1 - S) * H        (soft reset: V = H - S * v_threshold)

    The state stored is the normalised membrane. Shapes: ``'s'``: ``[N, C]``, ``[N, C, L]`` or
    ``[N, C, H, W]``; ``'m'``: the same with a leading ``T``. ``tau`` must be > 1.
    Other arguments as :class:`MPBNBaseNode`.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 mpbn: bool = True, out_features: int | None = None,
                 out_channels: int | None = None, learnable_vth: bool = False,
                 bn_momentum: float = 0.1, bn_decay_momentum: float = 0.94,
                 bn_min_momentum: float = 0.005, *, backend: str = "scan",
                 use_running_average: bool = False):
        owner = type(self).__name__
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, mpbn, out_features, out_channels, learnable_vth,
                         bn_momentum, bn_decay_momentum, bn_min_momentum, backend=backend,
                         use_running_average=use_running_average)
        self.tau = check_greater("tau", tau, 1.0, owner)
        self.decay_input = check_bool("decay_input", decay_input, owner)

    def params(self) -> dict:
        return {**super().params(), "tau": self.tau}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return lif_charge(v, x, params, decay_input=self.decay_input, soft_reset=self.soft_reset)


__all__ = ["MPBNBaseNode", "MPBNLIFNode", "MembraneBatchNorm"]
