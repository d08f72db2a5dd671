"""Noisy neurons for exploration in reinforcement learning (SpikingJelly's ``neuron.noisy``).

During training, coloured Gaussian noise (:func:`snnjax.noise.powerlaw_psd_gaussian`) is added to
the input current and to the output of spiking layers (or to the input of the non-spiking
integrator). Noise follows the NNX train/eval mode: on after ``model.train()``, off after
``model.eval()`` (``is_training`` sets the initial mode). Randomness comes from ``nnx.Rngs``
(stream ``'noise'``, falling back to ``'default'``), never from a global generator.

Noise life-cycle (as the reference): ``reset_noise(num_rl_step)`` draws ``num_rl_step * T`` steps
of one continuous coloured series per neuron; every training call consumes the next ``T`` steps
(``noise_step`` advances). ``load_colored_noise(cn)`` supplies a realisation explicitly
(``[B, T, k * num_node]``, one per sample, e.g. from a replay buffer) until ``cancel_load()``.

Pure API: ``m.multi_step(state, x_seq, noise=...)`` takes the noise as an argument (in training
mode), so it is a plain function of its inputs under ``jit`` / ``vmap`` / ``grad``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import kernels, steps
from snnjax.neuron.base import (
    ModuleStep,
    Array, MemoryModule, check_bool, check_choice, check_number,
)
from snnjax.neuron.ilc import (
    ConnectionFeedback, ILCConnection, PopulationNode, _CUBACharge, _check_positive_int,
    _check_rngs,
)
from snnjax.noise import powerlaw_psd_gaussian


class NoiseBuffer(nnx.Variable):
    """Drawn or loaded noise realisations (not trained); ``None`` when absent."""


class NoiseCounter(nnx.Variable):
    """Index of the RL step whose drawn noise the latest training call used (``-1``: none yet)."""


def _noise_rng_stream(rngs: Any, owner: str) -> Any:
    if rngs is None:
        return nnx.data(None)
    if isinstance(rngs, nnx.Rngs):
        return rngs["noise"].fork()
    if isinstance(rngs, nnx.RngStream):
        return rngs.fork()
    raise TypeError(f"{owner}: rngs must be a flax.nnx.Rngs, an nnx.RngStream or None, "
                    f"got {rngs!r}")


def _broadcast_noise(noise: Array, x_seq: Array) -> Array:
    """Noise ``[T, *S]`` whose per-step part broadcasts against ``x_seq``'s per-step ``[N, *]``
    (``[T, num_node]`` shared by the batch, ``[T, B, num_node]`` per sample) -> ``x_seq.shape``."""
    noise = jnp.asarray(noise)
    if noise.ndim < 1 or noise.shape[0] != x_seq.shape[0] or noise.ndim > x_seq.ndim:
        raise ValueError(f"noise must be time-first [T, *] with T = {x_seq.shape[0]} and a "
                         f"per-step shape that broadcasts against {tuple(x_seq.shape[1:])}; "
                         f"got shape {tuple(noise.shape)}")
    step_shape = (1,) * (x_seq.ndim - noise.ndim) + noise.shape[1:]
    try:
        return jnp.broadcast_to(noise.reshape(noise.shape[:1] + step_shape), x_seq.shape)
    except ValueError:
        raise ValueError(f"noise of per-step shape {tuple(noise.shape[1:])} does not broadcast "
                         f"against the input's per-step shape {tuple(x_seq.shape[1:])}") from None


class _ColoredNoise:
    """Drawing, storing, replaying and selecting the coloured noise (shared by every noisy node).

    Internally one array holds the ``k`` noise kinds side by side on the last axis (``k = 2``:
    membrane then spike noise; ``k = 1`` for the non-spiking node), which is also the layout of
    :meth:`get_colored_noise` and :meth:`load_colored_noise`.
    """

    _noise_kinds: int = 2

    def _init_noise(self, num_node: int, is_training: bool, T: int, beta: float,
                    rngs: Any) -> None:
        owner = type(self).__name__
        self.num_node = _check_positive_int("num_node", num_node, owner)
        self.T = _check_positive_int("T", T, owner)
        self.beta = check_number("beta", beta, owner)
        # the NNX train/eval flag (model.train() / model.eval() set it)
        self.deterministic = not check_bool("is_training", is_training, owner)
        self.rngs = _noise_rng_stream(rngs, owner)
        self.eps = NoiseBuffer(None)            # [num_rl_step, T, k * num_node], float32
        self.loaded_noise = NoiseBuffer(None)   # [B, T, k * num_node]
        self.noise_step = NoiseCounter(jnp.asarray(-1, jnp.int32))

    # -- train / eval -----------------------------------------------------------------------

    @property
    def is_training(self) -> bool:
        """Noise on (training) or off; an alias of ``not self.deterministic``."""
        return not self.deterministic

    @is_training.setter
    def is_training(self, value: bool) -> None:
        self.deterministic = not check_bool("is_training", value, type(self).__name__)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Hook of ``nnx.view(model, deterministic=...)``."""
        if deterministic is not None:
            self.deterministic = bool(deterministic)

    # -- the reference's noise API ----------------------------------------------------------

    def reset_noise(self, num_rl_step: int) -> None:
        """Draw ``num_rl_step`` RL steps of noise: per neuron and kind one coloured series
        (exponent ``beta``) of length ``num_rl_step * T``, cut into ``[num_rl_step, T]``; resets
        ``noise_step`` to -1. Keys come from the module's ``rngs``."""
        owner = type(self).__name__
        num_rl_step = _check_positive_int("num_rl_step", num_rl_step, owner)
        if self.rngs is None:
            raise ValueError(f"{owner}: reset_noise needs random keys: construct the module with "
                             f"rngs=nnx.Rngs(...) (stream 'noise' or 'default'), or supply noise "
                             f"with load_colored_noise(cn)")
        k, t = self.num_node, self.T
        kinds = []
        for _ in range(self._noise_kinds):
            y = powerlaw_psd_gaussian(self.beta, (k, num_rl_step * t), key=self.rngs(),
                                      dtype=jnp.float32)
            # eps[r, t, j] = y[j, r * T + t]: one continuous series across consecutive RL steps
            kinds.append(jnp.transpose(y.reshape(k, num_rl_step, t), (1, 2, 0)))
        self.eps.set_value(jnp.concatenate(kinds, axis=-1))
        self.noise_step.set_value(jnp.asarray(-1, jnp.int32))

    def get_colored_noise(self) -> Array:
        """The drawn noise used by the latest training call, ``[T, k * num_node]``."""
        eps = self.eps.get_value()
        if eps is None:
            raise ValueError(f"{type(self).__name__}: no noise drawn yet: call reset_noise first")
        return jnp.take(eps, self.noise_step.get_value(), axis=0, mode="fill",
                        fill_value=jnp.nan)

    def load_colored_noise(self, cn: Array) -> None:
        """Use ``cn`` ``[B, T', k * num_node]`` (``T' >= T``; sample ``b`` gets ``cn[b]``) instead of
        the drawn noise until :meth:`cancel_load`; ``noise_step`` does not advance meanwhile."""
        cn = jnp.asarray(cn)
        width = self._noise_kinds * self.num_node
        if cn.ndim != 3 or cn.shape[1] < self.T or cn.shape[2] != width:
            raise ValueError(f"{type(self).__name__}: load_colored_noise expects cn of shape "
                             f"[B, T >= {self.T}, {width}], got {tuple(cn.shape)}")
        self.loaded_noise.set_value(cn)

    def cancel_load(self) -> None:
        """Go back to the drawn noise."""
        self.loaded_noise.set_value(None)

    @property
    def eps_seq(self) -> Array | None:
        return self.eps.get_value()

    # -- selecting the noise of one training call -------------------------------------------

    def _split_kinds(self, cn: Array) -> tuple[Array, ...]:
        k = self.num_node
        return tuple(cn[..., i * k:(i + 1) * k] for i in range(self._noise_kinds))

    def _next_noise(self) -> tuple[Array, ...] | None:
        """The noise of this call, time first (``[T, num_node]`` drawn, ``[T, B, num_node]``
        loaded), or ``None`` in eval mode. Advances ``noise_step`` for drawn noise."""
        if self.deterministic:
            return None
        owner = type(self).__name__
        cn = self.loaded_noise.get_value()
        if cn is not None:
            return self._split_kinds(jnp.swapaxes(cn[:, :self.T], 0, 1))
        eps = self.eps.get_value()
        if eps is None:
            raise ValueError(f"{owner}: training mode needs noise: call reset_noise(num_rl_step) "
                             f"or load_colored_noise(cn) first (or switch to eval mode)")
        step = self.noise_step.get_value() + 1
        try:
            concrete = int(step)
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
            concrete = None  # under a transform: an exhausted buffer yields NaN noise below
        if concrete is not None and concrete >= eps.shape[0]:
            raise IndexError(f"{owner}: all {eps.shape[0]} RL steps of drawn noise are used up; "
                             f"call reset_noise(num_rl_step) again")
        self.noise_step.set_value(step)
        return self._split_kinds(jnp.take(eps, step, axis=0, mode="fill", fill_value=jnp.nan))

    def _check_length(self, x_seq: Array) -> Array:
        """The reference loops over the constructor's ``T``: extra steps are ignored."""
        if x_seq.shape[0] < self.T:
            raise ValueError(f"{type(self).__name__}: x_seq has {x_seq.shape[0]} time steps but "
                             f"the layer runs T = {self.T} steps")
        return x_seq[:self.T]


# --- spiking noisy nodes -----------------------------------------------------------------------

class NoisyBaseNode(_ColoredNoise, PopulationNode):
    r"""Spiking layer with coloured exploration noise (abstract: define the charge).

    Input ``x_seq`` ``[T', N, num_node]`` with ``T' >= T``; the stateful call runs the first ``T``
    steps and returns ``[T, N, num_node]``. Per step in training mode:

    .. math:: \tilde X = X + \sigma_v n_v,\ H = \mathrm{charge}(V, \tilde X),\
              S = \Theta_{sg}(H - \theta),\ V = R(H, S),\ \mathrm{out} = S + \sigma_s n_s

    (the reset uses the clean spike); in eval mode ``n_v = n_s = 0``.
    ``sigma_v = sigma_s = sigma_init / sqrt(num_node)`` are constants (in :meth:`params`, not
    learnable). ``sigma * n`` is computed in the noise dtype (float32 for drawn noise), as the
    reference. Default surrogate ``Rect()``, threshold 0.5; ``v_reset=None`` gives a soft reset.
    """

    def __init__(self, num_node: int, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 0.5,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs | None = None, backend: str = "auto"):
        PopulationNode.__init__(self, v_threshold, v_reset, surrogate_function, backend=backend)
        self._init_noise(num_node, is_training, T, beta, rngs)
        self.sigma_init = check_number("sigma_init", sigma_init, type(self).__name__)
        self.sigma_v = self.sigma_s = self.sigma_init / math.sqrt(self.num_node)

    def params(self) -> dict:
        return {**super().params(), "sigma_v": self.sigma_v, "sigma_s": self.sigma_s}

    @property
    def eps_v_seq(self) -> Array | None:
        """Drawn membrane noise ``[num_rl_step, T, num_node]``."""
        eps = self.eps.get_value()
        return None if eps is None else self._split_kinds(eps)[0]

    @property
    def eps_s_seq(self) -> Array | None:
        """Drawn spike noise ``[num_rl_step, T, num_node]``."""
        eps = self.eps.get_value()
        return None if eps is None else self._split_kinds(eps)[1]

    def _step_kwargs(self) -> dict:
        return {}

    def _step(self, noisy: bool) -> Callable:
        def step(state, x, params):
            return steps.population_step(state, x, params, charge=self.neuronal_charge,
                                         surrogate=self.surrogate_function,
                                         soft_reset=self.soft_reset, noisy=noisy,
                                         **self._step_kwargs())
        return step

    def single_step_functional(self, state: dict, x: Any, params: dict) -> tuple[dict, Array]:
        """``x`` is ``X[t]`` (eval) or ``(X[t], n_v[t], n_s[t])`` (training)."""
        return self._step(isinstance(x, tuple))(state, x, params)

    def _noise_input(self, x: Array, noise: Any, seq: bool) -> Any:
        if self.deterministic:
            return x  # eval: the noise is not used
        owner = type(self).__name__
        if noise is None:
            raise ValueError(f"{owner}: in training mode the pure API needs the noise: pass "
                             f"noise=(n_v, n_s) (e.g. the halves of get_colored_noise()), or call "
                             f"model.eval() for the noiseless layer")
        if not isinstance(noise, (tuple, list)) or len(noise) != 2:
            raise ValueError(f"{owner}: noise must be a pair (n_v, n_s), got {type(noise).__name__}")
        if seq:
            return (x,) + tuple(_broadcast_noise(n, x) for n in noise)
        return (x,) + tuple(jnp.broadcast_to(jnp.asarray(n), x.shape) for n in noise)

    def step(self, state: dict, x: Array, params: dict | None = None, *,
             noise: tuple | None = None) -> tuple[dict, Array]:
        """One step ``(state, x[N, num_node]) -> (state, out)``; in training mode ``noise`` is the
        pair ``(n_v[t], n_s[t])`` broadcastable to ``x`` (ignored in eval mode)."""
        x = jnp.asarray(x)
        return self.single_step_functional(state, self._noise_input(x, noise, False),
                                           self._params(params))

    def multi_step(self, state: dict, x_seq: Array, params: dict | None = None, *,
                   noise: tuple | None = None, return_state_seq: bool = False) -> tuple[dict, Array]:
        """All steps of ``x_seq[T, N, num_node]`` (the whole given sequence); in training mode
        ``noise = (n_v, n_s)``, each ``[T, num_node]`` (shared by the batch) or
        ``[T, N, num_node]`` (per sample); ignored in eval mode."""
        self._check_sequence(x_seq)
        x_seq = jnp.asarray(x_seq)
        xs = self._noise_input(x_seq, noise, True)
        noisy = isinstance(xs, tuple)
        return kernels.multi_step(ModuleStep(self, self._step(noisy), noisy), state, xs,
                                  self._params(params), backend=self.backend,
                                  return_state_seq=return_state_seq)

    def multi_step_forward(self, x_seq: Array) -> Array:
        """The reference's forward: the first ``T`` steps from the initial state, with the next
        drawn (or the loaded) noise in training mode."""
        self._check_sequence(x_seq)
        x_seq = self._check_length(jnp.asarray(x_seq))
        noise = self._next_noise()
        state, out = self.multi_step(self.init_state(x_seq[0]), x_seq, noise=noise)
        self.memory.set_value(state)
        return out


class NoisyCUBALIFNode(_CUBACharge, NoisyBaseNode):
    """Noisy current-based LIF: ``C = c_decay C + X~``, ``H = v_decay V + C`` (``C`` starts at 0
    and is never reset); see :class:`NoisyBaseNode`. Elementwise step."""

    def __init__(self, num_node: int, c_decay: float = 0.5, v_decay: float = 0.75,
                 is_training: bool = True, T: int = 5, sigma_init: float = 0.5,
                 beta: float = 0.0, v_threshold: float = 0.5, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, *, rngs: nnx.Rngs | None = None,
                 backend: str = "auto"):
        NoisyBaseNode.__init__(self, num_node, is_training, T, sigma_init, beta, v_threshold,
                               v_reset, surrogate_function, rngs=rngs, backend=backend)
        self._init_cuba(c_decay, v_decay)


class NoisyILCBaseNode(ConnectionFeedback, NoisyBaseNode):
    r"""Noisy spiking population with the ILC recurrent connection (abstract: define the charge).

    ``num_node = act_dim * dec_pop_dim``; ``conn`` as :class:`snnjax.neuron.ILCBaseNode`
    (``rngs.params`` initialises it). Per step: ``X~ = X + F (+ sigma_v n_v)``, charge, fire,
    reset with the clean spike, ``out = S (+ sigma_s n_s)``, ``F' = conn(out)`` (the **noisy**
    output is fed back). The caller's input is not modified. ``lax.scan`` engine (the feedback
    mixes neurons). Default ``v_threshold=1.0``.
    """

    def __init__(self, act_dim: int, dec_pop_dim: int, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs):
        owner = type(self).__name__
        act_dim = _check_positive_int("act_dim", act_dim, owner)
        dec_pop_dim = _check_positive_int("dec_pop_dim", dec_pop_dim, owner)
        rngs = _check_rngs(rngs, owner, "initialise conn and draw the noise")
        NoisyBaseNode.__init__(self, act_dim * dec_pop_dim, is_training, T, sigma_init, beta,
                               v_threshold, v_reset, surrogate_function, rngs=rngs,
                               backend="scan")
        self.act_dim, self.dec_pop_dim = act_dim, dec_pop_dim
        self.out_pop_dim = act_dim * dec_pop_dim
        self.conn = ILCConnection(act_dim, dec_pop_dim, rngs=rngs)

    def _step_kwargs(self) -> dict:
        return {"dec_pop_dim": self.dec_pop_dim}


class NoisyILCCUBALIFNode(_CUBACharge, NoisyILCBaseNode):
    """Noisy ILC current-based LIF (CUBA charge as :class:`NoisyCUBALIFNode`, feedback as
    :class:`NoisyILCBaseNode`). Default ``v_threshold=1.0`` (unlike ``ILCCUBALIFNode``)."""

    def __init__(self, act_dim: int, dec_pop_dim: int, c_decay: float = 0.5,
                 v_decay: float = 0.75, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs):
        NoisyILCBaseNode.__init__(self, act_dim, dec_pop_dim, is_training, T, sigma_init, beta,
                                  v_threshold, v_reset, surrogate_function, rngs=rngs)
        self._init_cuba(c_decay, v_decay)


# --- non-spiking -------------------------------------------------------------------------------

class NoisyNonSpikingBaseNode(_ColoredNoise, nnx.Module):
    r"""Noisy non-spiking integrator layer (abstract: define :meth:`neuronal_charge`).

    Input ``[T', N, num_node]`` (``T' >= T``; the first ``T`` steps are used). ``V`` starts at 0;
    per step ``X~ = X + sigma * n`` (training only), ``V = charge(V, X~)``. Output by ``decode``:
    ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last-me'`` (the reference's spelling;
    ``'last_mem'`` is accepted too), each ``[N, num_node]``, or ``None``: the membrane sequence
    ``[T, N, num_node]`` (stacked; the reference returns a list). ``sigma`` is a learnable
    ``nnx.Param`` ``[num_node]`` initialised to ``sigma_init / sqrt(num_node)``.
    """

    _noise_kinds = 1

    def __init__(self, num_node: int, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, decode: str | None = None, *,
                 rngs: nnx.Rngs | None = None, backend: str = "auto"):
        owner = type(self).__name__
        self._init_noise(num_node, is_training, T, beta, rngs)
        self.sigma_init = check_number("sigma_init", sigma_init, owner)
        self.decode = check_choice("decode", decode, steps.NOISY_DECODES, owner)
        try:
            self.backend = kernels.check_backend(backend)
        except ValueError as e:
            raise ValueError(f"{owner}: {e}") from None
        self.sigma = nnx.Param(jnp.full((self.num_node,), self.sigma_init / math.sqrt(self.num_node),
                                        jnp.float32))

    def params(self) -> dict:
        return {"sigma": self.sigma.get_value()}

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(v, x, params)")

    def init_state(self, x: Array) -> dict:
        x = jnp.asarray(x)
        return {"v": jnp.zeros(x.shape, steps.state_dtype(x.dtype))}

    def single_step_functional(self, state: dict, x: Any, params: dict) -> tuple[dict, Array]:
        """``x`` is ``X[t]`` (eval) or ``(X[t], n[t])`` (training); returns ``(state, V[t])``."""
        return steps.noisy_integrator_step(state, x, params, charge=self.neuronal_charge,
                                           noisy=isinstance(x, tuple))

    def _params(self, params: dict | None) -> dict:
        return MemoryModule._params(self, params)

    def _noise_input(self, x: Array, noise: Any, seq: bool) -> Any:
        if self.deterministic:
            return x
        if noise is None:
            raise ValueError(f"{type(self).__name__}: in training mode the pure API needs the "
                             f"noise: pass noise=n (e.g. get_colored_noise()), or call "
                             f"model.eval() for the noiseless layer")
        n = _broadcast_noise(noise, x) if seq else jnp.broadcast_to(jnp.asarray(noise), x.shape)
        return (x, n)

    def step(self, state: dict, x: Array, params: dict | None = None, *,
             noise: Array | None = None) -> tuple[dict, Array]:
        """One integration step; ``noise`` ``n[t]`` broadcastable to ``x`` in training mode."""
        x = jnp.asarray(x)
        return self.single_step_functional(state, self._noise_input(x, noise, False),
                                           self._params(params))

    def multi_step(self, state: dict, x_seq: Array, params: dict | None = None, *,
                   noise: Array | None = None) -> tuple[dict, Array]:
        """Integrate all of ``x_seq[T, N, num_node]``; returns ``(final_state, decoded)``.
        ``noise`` (training mode): ``[T, num_node]`` or ``[T, N, num_node]``."""
        MemoryModule._check_sequence(self, x_seq)
        x_seq = jnp.asarray(x_seq)
        final, v_seq = kernels.multi_step(ModuleStep(self, self.single_step_functional), state,
                                          self._noise_input(x_seq, noise, True),
                                          self._params(params), backend=self.backend)
        return final, steps.decode_noisy_membrane(v_seq, self.decode)

    def __call__(self, x_seq: Array) -> Array:
        """The reference's forward: the first ``T`` steps from ``V = 0``, decoded."""
        MemoryModule._check_sequence(self, x_seq)
        x_seq = self._check_length(jnp.asarray(x_seq))
        noise = self._next_noise()
        return self.multi_step(self.init_state(x_seq[0]), x_seq,
                               noise=None if noise is None else noise[0])[1]


class NoisyNonSpikingIFNode(NoisyNonSpikingBaseNode):
    """Noisy perfect integrator: ``V[t] = V[t-1] + X[t] + sigma * n[t]`` (noise in training only);
    see :class:`NoisyNonSpikingBaseNode`."""

    def neuronal_charge(self, v: Array, x: Array, params: dict) -> Array:
        return steps.if_charge(v, x, params)


__all__ = ["NoiseBuffer", "NoiseCounter", "NoisyBaseNode", "NoisyCUBALIFNode",
           "NoisyILCBaseNode", "NoisyILCCUBALIFNode", "NoisyNonSpikingBaseNode",
           "NoisyNonSpikingIFNode"]
