"""Spiking neuron modules (Flax NNX), named and parameterised like
``spikingjelly.activation_based.neuron``.

Every module has the stateful call ``m(x)`` (``step_mode='s'``: ``[N, *]``; ``'m'``:
``[T, N, *]``) and the pure API ``m.init_state(x)``, ``m.step(state, x)``,
``m.multi_step(state, x_seq)``, which never mutates the module.
"""
from snnjax.neuron.base import (
    BaseNode, MemoryModule, NeuronState, NonSpikingBaseNode, SimpleBaseNode, StackAxes,
    StateSequence,
)
from snnjax.neuron.integrate_and_fire import (
    IFNode, LIFNode, NonSpikingIFNode, NonSpikingLIFNode, ParametricLIFNode, SimpleIFNode,
    SimpleLIFNode,
)
from snnjax.neuron.psn import MaskedPSN, PSN, SlidingPSN
from snnjax.neuron.flexsn import FlexSN, FlexSNKernel, NativeFlexSN
from snnjax.neuron.dsr import DSRIFNode, DSRLIFNode
from snnjax.neuron.mpbn import MPBNBaseNode, MPBNLIFNode
from snnjax.neuron.online import OTTTLIFNode, SLTTLIFNode
from snnjax.neuron.adaptive import AdaptBaseNode, EIFNode, IzhikevichNode, QIFNode
from snnjax.neuron.lif_variants import CUBALIFNode, GatedLIFNode, KLIFNode, LIAFNode
from snnjax.neuron.extra import ComplementaryLIFNode, HalfThresholdIFNode, ILIFNode
from snnjax.neuron.ilc import ILCBaseNode, ILCConnection, ILCCUBALIFNode, ILCIFNode, ILCLIFNode
from snnjax.neuron.noisy import (
    NoisyBaseNode, NoisyCUBALIFNode, NoisyILCBaseNode, NoisyILCCUBALIFNode,
    NoisyNonSpikingBaseNode, NoisyNonSpikingIFNode,
)
from snnjax.noise import powerlaw_psd_gaussian

__all__ = [
    "AdaptBaseNode", "BaseNode", "ComplementaryLIFNode", "CUBALIFNode", "DSRIFNode", "DSRLIFNode",
    "EIFNode", "FlexSN", "FlexSNKernel", "GatedLIFNode", "HalfThresholdIFNode", "IFNode",
    "ILCBaseNode", "ILCConnection", "ILCCUBALIFNode", "ILCIFNode", "ILCLIFNode", "ILIFNode",
    "IzhikevichNode", "KLIFNode", "LIAFNode", "LIFNode", "MaskedPSN", "MemoryModule",
    "MPBNBaseNode", "MPBNLIFNode", "NativeFlexSN", "NeuronState", "NoisyBaseNode",
    "NoisyCUBALIFNode", "NoisyILCBaseNode", "NoisyILCCUBALIFNode", "NoisyNonSpikingBaseNode",
    "NoisyNonSpikingIFNode", "NonSpikingBaseNode", "NonSpikingIFNode", "NonSpikingLIFNode",
    "OTTTLIFNode", "ParametricLIFNode", "powerlaw_psd_gaussian", "PSN", "QIFNode",
    "SimpleBaseNode", "SimpleIFNode", "SimpleLIFNode", "SlidingPSN", "SLTTLIFNode", "StackAxes",
    "StateSequence",
]
