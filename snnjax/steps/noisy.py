"""The noisy non-spiking integrator of SpikingJelly's ``neuron.noisy`` as a pure step.

The spiking noisy neurons (``NoisyCUBALIFNode``, ``NoisyILCCUBALIFNode``) run
:func:`snnjax.steps.ilc.population_step` with ``noisy=True``. The integrator's membrane sequence
is decoded by :func:`snnjax.steps.decode_membrane`. No Flax imports.
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from snnjax.steps.common import Array
from snnjax.steps.integrate_and_fire import Charge, integrator_step

# 'last-me' is the reference's spelling; 'last_mem' / 'last-mem' are accepted as the same thing
NOISY_DECODES = ("max-mem", "max-abs-mem", "mean-mem", "last-me", "last_mem", "last-mem", None)


def noisy_integrator_step(state: dict, x: Any, params: dict, *, charge: Charge,
                          noisy: bool) -> tuple[dict, Array]:
    r"""``V[t] = charge(V[t-1], X[t] (+ sigma * n[t]))``; the output is ``V[t]``.

    ``x`` is ``X[t]`` or, with ``noisy=True``, the pair ``(X[t], n[t])`` (``n`` broadcastable to
    ``X``). ``params["sigma"]`` is the learnable per-neuron noise scale (``[num_node]``), which
    receives gradient through the noise term; ordinary dtype promotion, as the reference's
    tensor-tensor product (no rounding to the noise dtype here).
    """
    if noisy:
        x, noise = x
        x = x + params["sigma"] * noise
    return integrator_step(state, x, params, charge=charge)


def broadcast_noise(noise: Any, x: Array, seq: bool) -> Array:
    """One noise kind of a step or sequence, broadcast to the input's shape.

    ``seq=True``: ``noise`` is time-first ``[T, *S]``, its per-step part broadcast against
    ``x``'s per-step ``[N, *]`` (``[T, num_node]`` shared by the batch, ``[T, B, num_node]`` per
    sample); ``seq=False``: ``noise`` broadcastable to ``x``. Returns ``x.shape``.
    """
    noise = jnp.asarray(noise)
    if seq and (noise.ndim < 1 or noise.shape[0] != x.shape[0] or noise.ndim > x.ndim):
        raise ValueError(f"noise must be time-first [T, *] with T = {x.shape[0]} and a per-step "
                         f"shape broadcastable to {tuple(x.shape[1:])}, got {noise.shape}")
    if seq:  # per-step axes aligned after T: [T, K] -> [T, 1, K]
        noise = noise.reshape(noise.shape[:1] + (1,) * (x.ndim - noise.ndim) + noise.shape[1:])
    try:
        return jnp.broadcast_to(noise, x.shape)
    except ValueError:
        raise ValueError(f"noise of shape {noise.shape} does not broadcast against the input's "
                         f"shape {tuple(x.shape)}") from None


__all__ = ["NOISY_DECODES", "broadcast_noise", "noisy_integrator_step"]
