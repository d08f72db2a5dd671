"""Parts that neurons are built from (Flax NNX sub-modules holding parameters or buffers, no
neuron equation): the ILC feedback ``conn``, the coloured ``noise`` of the noisy neurons and the
membrane batch norm ``vbn`` of MPBN. A neuron holds a part as an attribute and hands its arrays
to the neuron's step in :mod:`snnjax.steps`.
"""
from snnjax.parts.feedback import ILCConnection
from snnjax.parts.noise import ColoredNoise, NoiseBuffer, NoiseCounter
from snnjax.parts.normalisation import MembraneBatchNorm

__all__ = ["ColoredNoise", "ILCConnection", "MembraneBatchNorm", "NoiseBuffer", "NoiseCounter"]
