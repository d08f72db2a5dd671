"""Noisy neurons for exploration in reinforcement learning (SpikingJelly's ``neuron.noisy``).

During training, coloured Gaussian noise (:func:`snnjax.noise.powerlaw_psd_gaussian`) is added to
the input current and to the output of spiking layers (or to the input of the non-spiking
integrator). Noise follows the NNX train/eval mode: on after ``model.train()``, off after
``model.eval()`` (``is_training`` sets the initial mode). Randomness comes from ``nnx.Rngs``
(stream ``'noise'``, falling back to ``'default'``), never from a global generator.

The noise is a part of the neuron, the ``noise`` sub-module (:class:`ColoredNoise`); the
reference's noise methods (``reset_noise``, ``load_colored_noise``, ...) are forwarded to it.
Noise life-cycle (as the reference): ``reset_noise(num_rl_step)`` draws ``num_rl_step * T`` steps
of one continuous coloured series per neuron; every training call consumes the next ``T`` steps
(``noise_step`` advances). ``load_colored_noise(cn)`` supplies a realisation explicitly
(``[B, T, k * num_node]``, one per sample, e.g. from a replay buffer) until ``cancel_load()``.

Pure API: ``m.multi_step(state, x_seq, noise=...)`` takes the noise as an argument (in training
mode), so it is a plain function of its inputs under ``jit`` / ``vmap`` / ``grad``. The
mathematics is :func:`snnjax.steps.population_step` (spiking, ``noisy`` static) and
:func:`snnjax.steps.noisy_integrator_step` (non-spiking).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import jax.numpy as jnp
from flax import nnx

from snnjax import _checks as C
from snnjax import steps
from snnjax.neuron.base import Array, BaseNode, MemoryModule, NonSpikingBaseNode, UserMethod
from snnjax.neuron.ilc import CUBA_CHECKS, ILCBaseNode, attach_connection, init_population
from snnjax.parts.noise import ColoredNoise, NoiseBuffer, NoiseCounter

if TYPE_CHECKING:
    from snnjax.parts.feedback import ILCConnection


def _forward(name: str) -> property:
    return property(lambda self: getattr(self.noise, name),
                    doc=f"``self.noise.{name}``: see :class:`ColoredNoise`.")


# --- spiking noisy nodes -----------------------------------------------------------------------

class NoisyBaseNode(MemoryModule):
    r"""Spiking layer with coloured exploration noise (abstract: set the charge).

    Input ``x_seq`` ``[T', N, num_node]`` with ``T' >= T``; the stateful call runs the first ``T``
    steps from the initial state and returns ``[T, N, num_node]``. Per step in training mode:

    .. math:: \tilde X = X + \sigma_v n_v,\ H = \mathrm{charge}(V, \tilde X),\
              S = \Theta_{sg}(H - \theta),\ V = R(H, S),\ \mathrm{out} = S + \sigma_s n_s

    (the reset uses the clean spike; never detached); in eval mode ``n_v = n_s = 0``.
    ``sigma_v = sigma_s = sigma_init / sqrt(num_node)`` are constants (in :meth:`params`, not
    learnable). ``sigma * n`` is computed in the noise dtype (float32 for drawn noise), as the
    reference. A custom layer sets the class attribute ``charge`` or overrides
    ``neuronal_charge(self, state, x, params) -> state``. The noise methods of the reference
    (``reset_noise``, ``load_colored_noise``, ``cancel_load``, ``get_colored_noise``,
    ``noise_step``, ``eps_seq``) are those of the ``noise`` part (:class:`ColoredNoise`).

    Args:
      num_node: neurons per step (the last input axis), a positive int (required).
      is_training: ``True`` / ``False``: the initial mode (noise on); ``model.eval()`` turns it off
        (default ``True``).
      T: number of time steps, a positive int (default ``5``).
      sigma_init: noise scale, ``>= 0`` (default ``0.5``).
      beta: exponent of the noise power spectrum ``1 / f^beta``, a finite number (0: white noise)
        (default ``0.0``).
      v_threshold: firing threshold, a finite number (default ``0.5``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: noise keys: ``nnx.Rngs`` (stream ``'noise'``, else ``'default'``) or ``None`` (then
        only ``load_colored_noise`` supplies noise) (default ``None``; keyword-only).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    State: ``v`` (initial ``v_reset``, 0 with soft reset); after a call the final state.
    """

    supported_step_modes = ("m",)
    step_fn = staticmethod(steps.population_step)
    charge: ClassVar[Callable | None] = None
    v_threshold: float
    v_reset: float | None
    surrogate_function: Callable
    deterministic: bool
    param_names = BaseNode.param_names + ("sigma_v", "sigma_s")
    ordered_pairs = BaseNode.ordered_pairs
    arg_checks = {**BaseNode.arg_checks, "sigma_init": C.at_least(0.0), "deterministic": C.boolean}
    neuronal_charge, step_config = ILCBaseNode.neuronal_charge, ILCBaseNode.step_config
    num_node, T, beta, noise_step = map(_forward, ("num_node", "T", "beta", "noise_step"))
    reset_noise, get_colored_noise, load_colored_noise, cancel_load = map(
        _forward, ("reset_noise", "get_colored_noise", "load_colored_noise", "cancel_load"))
    eps_seq = property(lambda self: self.noise.eps.get_value(), doc="Drawn noise (or None).")
    eps_v_seq = property(lambda self: self.noise.drawn(0), doc="Drawn membrane noise.")
    eps_s_seq = property(lambda self: self.noise.drawn(1), doc="Drawn spike noise.")

    def __init__(self, num_node: int, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 0.5,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs | None = None, backend: str = "auto"):
        super().__init__("m", backend)
        init_population(self, v_threshold, v_reset, surrogate_function)
        self.noise = ColoredNoise(num_node, T, beta, rngs, kinds=2, owner=type(self).__name__)
        self.is_training, self.sigma_init = is_training, sigma_init
        self.sigma_v = self.sigma_s = self.sigma_init / math.sqrt(self.num_node)

    @property
    def is_training(self) -> bool:
        """Noise on (training) or off; an alias of ``not self.deterministic`` (the NNX flag
        that ``model.train()`` / ``model.eval()`` set)."""
        return not self.deterministic

    @is_training.setter
    def is_training(self, value: bool) -> None:
        self.deterministic = not C.boolean(type(self).__name__, "is_training", value)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Hook of ``nnx.view(model, deterministic=...)``."""
        if deterministic is not None:
            self.deterministic = deterministic

    def _noisy(self, x: Any, noise: Any, seq: bool) -> Any:
        self.noise.check_width(x := C.as_input(x, type(self).__name__))
        return x if self.deterministic else self.noise.combine(x, noise, seq)

    def _conform(self, state: Any, x: Any, **kwargs: Any) -> Any:
        return super()._conform(state, x[0] if isinstance(x, tuple) else x, **kwargs)

    def step(self, state: dict, x: Any, params: dict | None = None, *,
             noise: tuple | None = None) -> tuple[dict, Array]:
        """One step ``(state, x[N, num_node]) -> (state, out)``; in training mode ``noise`` is the
        pair ``(n_v[t], n_s[t])`` broadcastable to ``x`` (ignored in eval mode)."""
        return super().step(state, self._noisy(x, noise, False), params)

    def multi_step(self, state: dict, x_seq: Any, params: dict | None = None, *,
                   noise: tuple | None = None, return_state_seq: bool = False) -> tuple:
        """All steps of ``x_seq[T, N, num_node]`` (the whole given sequence); in training mode
        ``noise = (n_v, n_s)``, each ``[T, num_node]`` (shared by the batch) or
        ``[T, N, num_node]`` (per sample); ignored in eval mode."""
        return super().multi_step(state, self._noisy(self._check_sequence(x_seq), noise, True),
                                  params, return_state_seq=return_state_seq)

    def multi_step_forward(self, x_seq: Any) -> Array:
        """The reference's forward: the first ``T`` steps from the initial state, with the next
        drawn (or the loaded) noise in training mode."""
        x_seq, noise = self.noise.take(self._check_sequence(x_seq), not self.deterministic)
        state, out = self.multi_step(self.init_state(x_seq[0]), x_seq, noise=noise)
        self._store(state)
        return out


class NoisyCUBALIFNode(NoisyBaseNode):
    """Noisy current-based LIF: ``C = c_decay C + X~``, ``H = v_decay V + C``
    (:func:`snnjax.steps.cuba_charge`; ``C`` starts at 0 and is never reset); see
    :class:`NoisyBaseNode`. Elementwise step.

    Args:
      num_node: neurons per step (the last input axis), a positive int (required).
      c_decay: retention factor of the synaptic current per step, in ``[0, 1]`` (default ``0.5``).
      v_decay: retention factor of the membrane per step, in ``[0, 1]`` (default ``0.75``).
      is_training: ``True`` / ``False``: the initial mode (noise on); ``model.eval()`` turns it off
        (default ``True``).
      T: number of time steps, a positive int (default ``5``).
      sigma_init: noise scale, ``>= 0`` (default ``0.5``).
      beta: exponent of the noise power spectrum ``1 / f^beta``, a finite number (0: white noise)
        (default ``0.0``).
      v_threshold: firing threshold, a finite number (default ``0.5``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: noise keys: ``nnx.Rngs`` (stream ``'noise'``, else ``'default'``) or ``None`` (then
        only ``load_colored_noise`` supplies noise) (default ``None``; keyword-only).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).

    State: ``v``, ``c``.
    """

    charge = staticmethod(steps.cuba_charge)
    param_names = NoisyBaseNode.param_names + ("c_decay", "v_decay")
    arg_checks = CUBA_CHECKS

    def __init__(self, num_node: int, c_decay: float = 0.5, v_decay: float = 0.75,
                 is_training: bool = True, T: int = 5, sigma_init: float = 0.5,
                 beta: float = 0.0, v_threshold: float = 0.5, v_reset: float | None = 0.0,
                 surrogate_function: Callable | None = None, *, rngs: nnx.Rngs | None = None,
                 backend: str = "auto"):
        super().__init__(num_node, is_training, T, sigma_init, beta, v_threshold, v_reset,
                         surrogate_function, rngs=rngs, backend=backend)
        self.c_decay, self.v_decay = c_decay, v_decay
        self.register_memory("c", 0.0)


class NoisyILCBaseNode(NoisyBaseNode):
    r"""Noisy spiking population with the ILC recurrent connection (abstract: set the charge).

    ``num_node = act_dim * dec_pop_dim``; ``conn`` as :class:`snnjax.neuron.ILCBaseNode`
    (``rngs.params`` initialises it). Per step: ``X~ = X + F (+ sigma_v n_v)``, charge, fire,
    reset with the clean spike, ``out = S (+ sigma_s n_s)``, ``F' = conn(out)`` (the **noisy**
    output is fed back). The caller's input is not modified. ``lax.scan`` engine (the feedback
    mixes neurons).

    Args:
      act_dim: number of groups ``A``, a positive int (``num_node = act_dim * dec_pop_dim``)
        (required).
      dec_pop_dim: neurons per group ``P``, a positive int (required).
      is_training: ``True`` / ``False``: the initial mode (noise on); ``model.eval()`` turns it off
        (default ``True``).
      T: number of time steps, a positive int (default ``5``).
      sigma_init: noise scale, ``>= 0`` (default ``0.5``).
      beta: exponent of the noise power spectrum ``1 / f^beta``, a finite number (0: white noise)
        (default ``0.0``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: ``nnx.Rngs``: ``rngs.params`` initialises ``conn``, stream ``'noise'`` (else
        ``'default'``) draws the noise (required) (required; keyword-only).

    State: ``v``, ``feedback``.
    """

    arg_checks = {"act_dim": C.positive_int, "dec_pop_dim": C.positive_int}
    out_pop_dim: int
    conn: ILCConnection
    params, init_state = ILCBaseNode.params, ILCBaseNode.init_state

    def __init__(self, act_dim: int, dec_pop_dim: int, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs):
        self.act_dim, self.dec_pop_dim = act_dim, dec_pop_dim
        super().__init__(self.act_dim * self.dec_pop_dim, is_training, T, sigma_init, beta,
                         v_threshold, v_reset, surrogate_function, rngs=rngs, backend="scan")
        attach_connection(self, rngs)  # requires an nnx.Rngs


class NoisyILCCUBALIFNode(NoisyILCBaseNode):
    """Noisy ILC current-based LIF (CUBA charge as :class:`NoisyCUBALIFNode`, feedback as
    :class:`NoisyILCBaseNode`).

    Args:
      act_dim: number of groups ``A``, a positive int (``num_node = act_dim * dec_pop_dim``)
        (required).
      dec_pop_dim: neurons per group ``P``, a positive int (required).
      c_decay: retention factor of the synaptic current per step, in ``[0, 1]`` (default ``0.5``).
      v_decay: retention factor of the membrane per step, in ``[0, 1]`` (default ``0.75``).
      is_training: ``True`` / ``False``: the initial mode (noise on); ``model.eval()`` turns it off
        (default ``True``).
      T: number of time steps, a positive int (default ``5``).
      sigma_init: noise scale, ``>= 0`` (default ``0.5``).
      beta: exponent of the noise power spectrum ``1 / f^beta``, a finite number (0: white noise)
        (default ``0.0``).
      v_threshold: firing threshold, a finite number (default ``1.0``).
      v_reset: hard-reset value, a finite number ``< v_threshold``; ``None``: soft reset ``V = H -
        S * v_threshold`` (default ``0.0``).
      surrogate_function: spike function with surrogate gradient, a surrogate *instance*
        (:mod:`snnjax.surrogate`; a class is refused) (default ``None``: ``Rect()``).
      rngs: ``nnx.Rngs``: ``rngs.params`` initialises ``conn``, stream ``'noise'`` (else
        ``'default'``) draws the noise (required) (required; keyword-only).

    State: ``v``, ``c``, ``feedback``.
    """

    charge = staticmethod(steps.cuba_charge)
    param_names = NoisyILCBaseNode.param_names + ("c_decay", "v_decay")
    arg_checks = CUBA_CHECKS

    def __init__(self, act_dim: int, dec_pop_dim: int, c_decay: float = 0.5,
                 v_decay: float = 0.75, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 1.0,
                 v_reset: float | None = 0.0, surrogate_function: Callable | None = None, *,
                 rngs: nnx.Rngs):
        super().__init__(act_dim, dec_pop_dim, is_training, T, sigma_init, beta, v_threshold,
                         v_reset, surrogate_function, rngs=rngs)
        self.c_decay, self.v_decay = c_decay, v_decay
        self.register_memory("c", 0.0)


# --- non-spiking -------------------------------------------------------------------------------

class NoisyNonSpikingBaseNode(nnx.Module):
    r"""Noisy non-spiking integrator layer (abstract: set the charge).

    Input ``[T', N, num_node]`` (``T' >= T``; the first ``T`` steps are used). ``V`` starts at 0
    on every call; per step ``X~ = X + sigma * n`` (training only), ``V = charge(V, X~)``.
    Output by ``decode``: ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last-me'`` (the
    reference's spelling; ``'last_mem'`` is accepted too), each ``[N, num_node]``, or ``None``:
    the membrane sequence ``[T, N, num_node]`` (stacked; the reference returns a list).
    A custom layer sets the class attribute ``charge`` (``(v, x, params) -> v``) or overrides
    ``neuronal_charge(self, v, x, params)``.

    Args:
      num_node: neurons per step (the last input axis), a positive int (required).
      is_training: ``True`` / ``False``: the initial mode (noise on); ``model.eval()`` turns it off
        (default ``True``).
      T: number of time steps, a positive int (default ``5``).
      sigma_init: noise scale, ``>= 0``: the learnable ``sigma`` (``nnx.Param`` ``[num_node]``)
        starts at ``sigma_init / sqrt(num_node)`` (default ``0.5``).
      beta: exponent of the noise power spectrum ``1 / f^beta``, a finite number (0: white noise)
        (default ``0.0``).
      decode: output decoding: ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last-me'`` (the
        reference's spelling; ``'last_mem'``, ``'last-mem'`` too) or ``None`` (default ``None``).
      rngs: noise keys: ``nnx.Rngs`` (stream ``'noise'``, else ``'default'``) or ``None`` (then
        only ``load_colored_noise`` supplies noise) (default ``None``; keyword-only).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    step_fn = staticmethod(steps.noisy_integrator_step)
    charge: ClassVar[Callable | None] = None
    deterministic: bool
    param_names = ("sigma",)
    arg_checks = {**NonSpikingBaseNode.arg_checks, "decode": C.choice(steps.NOISY_DECODES),
                  "sigma_init": C.at_least(0.0), "deterministic": C.boolean}
    # the integrator's protocol from NonSpikingBaseNode, the noise API from NoisyBaseNode
    __setattr__, _memory_index = NonSpikingBaseNode.__setattr__, MemoryModule._memory_index
    params, _params, bound_step = MemoryModule.params, MemoryModule._params, MemoryModule.bound_step
    finite_state = True
    _check_sequence, init_state = MemoryModule._check_sequence, NonSpikingBaseNode.init_state
    _conform = NonSpikingBaseNode._conform
    is_training, set_view = NoisyBaseNode.is_training, NoisyBaseNode.set_view
    _noisy, eps_seq = NoisyBaseNode._noisy, NoisyBaseNode.eps_seq
    neuronal_charge = ILCBaseNode.neuronal_charge  # abstract: (self, v, x, params) -> V here
    num_node, T, beta, noise_step = map(_forward, ("num_node", "T", "beta", "noise_step"))
    reset_noise, get_colored_noise, load_colored_noise, cancel_load = map(
        _forward, ("reset_noise", "get_colored_noise", "load_colored_noise", "cancel_load"))

    def __init__(self, num_node: int, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, decode: str | None = None, *,
                 rngs: nnx.Rngs | None = None, backend: str = "auto"):
        self.noise = ColoredNoise(num_node, T, beta, rngs, kinds=1, owner=type(self).__name__)
        self.is_training, self.sigma_init, self.decode, self.backend = (is_training, sigma_init,
                                                                        decode, backend)
        self.sigma = nnx.Param(jnp.full((self.num_node,), self.sigma_init
                                        / math.sqrt(self.num_node), jnp.float32))

    def step_config(self) -> dict:
        return {"charge": type(self).charge or UserMethod(self, "neuronal_charge"),
                "noisy": not self.deterministic}

    def step(self, state: dict, x: Any, params: dict | None = None, *,
             noise: Array | None = None) -> tuple[dict, Array]:
        """One integration step ``-> (state, V[t])``; ``noise`` ``n[t]`` broadcastable to ``x``
        in training mode."""
        return NonSpikingBaseNode.step(self, state,  # pyright: ignore[reportArgumentType] (borrowed)
                                       self._noisy(x, noise, False), params)

    def multi_step(self, state: dict, x_seq: Any, params: dict | None = None, *,
                   noise: Array | tuple | None = None) -> tuple[dict, Array]:
        """Integrate all of ``x_seq[T, N, num_node]``; returns ``(final_state, decoded)``.
        ``noise`` (training mode): ``[T, num_node]`` or ``[T, N, num_node]``."""
        return NonSpikingBaseNode.multi_step(
            self, state,  # pyright: ignore[reportArgumentType] (borrowed method)
            self._noisy(self._check_sequence(x_seq), noise, True), params)

    def __call__(self, x_seq: Any) -> Array:
        """The reference's forward: the first ``T`` steps from ``V = 0``, decoded."""
        x_seq, noise = self.noise.take(self._check_sequence(x_seq), not self.deterministic)
        return self.multi_step(self.init_state(x_seq[0]), x_seq, noise=noise)[1]


class NoisyNonSpikingIFNode(NoisyNonSpikingBaseNode):
    """Noisy perfect integrator: ``V[t] = V[t-1] + X[t] + sigma * n[t]`` (noise in training only);
    see :class:`NoisyNonSpikingBaseNode`.

    Args:
      num_node: neurons per step (the last input axis), a positive int (required).
      is_training: ``True`` / ``False``: the initial mode (noise on); ``model.eval()`` turns it off
        (default ``True``).
      T: number of time steps, a positive int (default ``5``).
      sigma_init: noise scale, ``>= 0``: the learnable ``sigma`` (``nnx.Param`` ``[num_node]``)
        starts at ``sigma_init / sqrt(num_node)`` (default ``0.5``).
      beta: exponent of the noise power spectrum ``1 / f^beta``, a finite number (0: white noise)
        (default ``0.0``).
      decode: output decoding: ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'``, ``'last-me'`` (the
        reference's spelling; ``'last_mem'``, ``'last-mem'`` too) or ``None`` (default ``None``).
      rngs: noise keys: ``nnx.Rngs`` (stream ``'noise'``, else ``'default'``) or ``None`` (then
        only ``load_colored_noise`` supplies noise) (default ``None``; keyword-only).
      backend: sequence engine: ``'auto'`` (fused kernels on a GPU, ``lax.scan`` elsewhere),
        ``'scan'``, ``'pallas'`` (Triton kernels; interpret mode without a GPU) or ``'mosaic'``
        (Mosaic GPU kernels, Hopper+) (default ``'auto'``; keyword-only).
    """

    charge = staticmethod(steps.if_charge)


__all__ = ["ColoredNoise", "NoiseBuffer", "NoiseCounter", "NoisyBaseNode", "NoisyCUBALIFNode",
           "NoisyILCBaseNode", "NoisyILCCUBALIFNode", "NoisyNonSpikingBaseNode",
           "NoisyNonSpikingIFNode"]
