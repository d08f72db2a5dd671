"""snnjax: spiking neurons for JAX and Flax NNX.

Public namespaces: :mod:`snnjax.neuron` (neuron modules), :mod:`snnjax.surrogate`
(surrogate spike functions), :mod:`snnjax.functional` (network helpers),
:mod:`snnjax.steps` (pure step functions), :mod:`snnjax.kernels` (sequence engines),
:mod:`snnjax.layer` (containers and step-mode layers), :mod:`snnjax.encoding` (spike encoders),
:mod:`snnjax.monitor` (firing-rate and state recording), :mod:`snnjax.nir` (NIR exchange; loaded
on first access, needs the optional ``nir`` package: ``pip install 'snnjax[nir]'``).
"""
from snnjax import surrogate, steps, kernels, neuron, functional
from snnjax import layer, encoding, monitor

__version__ = "0.1.0"
__all__ = ["encoding", "functional", "kernels", "layer", "monitor", "neuron", "steps",
           "surrogate"]


def __getattr__(name: str):
    """``snnjax.nir`` is imported on first access, so ``import snnjax`` never needs ``nir``."""
    if name == "nir":
        import importlib
        return importlib.import_module("snnjax.nir")
    raise AttributeError(f"module 'snnjax' has no attribute {name!r}")
