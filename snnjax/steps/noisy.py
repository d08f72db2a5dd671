"""Noisy neurons of SpikingJelly's ``neuron.noisy`` as pure steps.

The spiking ones (``NoisyCUBALIFNode``, ``NoisyILCCUBALIFNode``) run
:func:`snnjax.steps.ilc.population_step` with ``noisy=True``; this file adds the noisy
non-spiking integrator and its decoding. No Flax imports.
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from snnjax.steps.common import Array
from snnjax.steps.integrate_and_fire import Charge, decode_membrane, integrator_step

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


def decode_noisy_membrane(v_seq: Array, decode: str | None) -> Array:
    """Decode a membrane sequence ``[T, N, *]`` as ``NoisyNonSpikingBaseNode``.

    ``'max-mem'``, ``'max-abs-mem'``, ``'mean-mem'`` (``[N, *]``); ``'last-me'`` (also
    ``'last_mem'``, ``'last-mem'``): ``V[T-1]``; ``None``: the stacked sequence ``[T, N, *]``.
    """
    if decode not in NOISY_DECODES:
        raise ValueError(f"decode must be one of {NOISY_DECODES}, got {decode!r}")
    if decode == "last-me":
        decode = "last_mem"
    return decode_membrane(jnp.asarray(v_seq), decode)


__all__ = ["NOISY_DECODES", "decode_noisy_membrane", "noisy_integrator_step"]
