"""snnjax: spiking neurons for JAX and Flax NNX.

Public namespaces: :mod:`snnjax.neuron` (neuron modules), :mod:`snnjax.surrogate`
(surrogate spike functions), :mod:`snnjax.functional` (network helpers),
:mod:`snnjax.steps` (pure step functions), :mod:`snnjax.kernels` (sequence engines).
"""
from snnjax import surrogate, steps, kernels, neuron, functional

__version__ = "0.1.0"
__all__ = ["functional", "kernels", "neuron", "steps", "surrogate"]
