"""Spiking neuron modules (Flax NNX), named and parameterised like
``spikingjelly.activation_based.neuron``.

Every module has the stateful call ``m(x)`` (``step_mode='s'``: ``[N, *]``; ``'m'``:
``[T, N, *]``) and the pure API ``m.init_state(x)``, ``m.step(state, x)``,
``m.multi_step(state, x_seq)``, which never mutates the module.
"""
from snnjax.neuron.base import (
    BaseNode, MemoryModule, NeuronState, NonSpikingBaseNode, SimpleBaseNode, StateSequence,
)
from snnjax.neuron.integrate_and_fire import (
    IFNode, LIFNode, NonSpikingIFNode, NonSpikingLIFNode, ParametricLIFNode, SimpleIFNode,
    SimpleLIFNode,
)

__all__ = [
    "BaseNode", "IFNode", "LIFNode", "MemoryModule", "NeuronState", "NonSpikingBaseNode",
    "NonSpikingIFNode", "NonSpikingLIFNode", "ParametricLIFNode", "SimpleBaseNode", "SimpleIFNode",
    "SimpleLIFNode", "StateSequence",
]

from snnjax.neuron.psn import MaskedPSN, PSN, SlidingPSN
__all__ += ["MaskedPSN", "PSN", "SlidingPSN"]
from snnjax.neuron.flexsn import FlexSN, FlexSNKernel, NativeFlexSN  # noqa: E402

__all__ += ["FlexSN", "FlexSNKernel", "NativeFlexSN"]
from snnjax.neuron.dsr import DSRIFNode, DSRLIFNode  # noqa: E402
from snnjax.neuron.mpbn import MPBNBaseNode, MPBNLIFNode  # noqa: E402
from snnjax.neuron.online import OTTTLIFNode, SLTTLIFNode  # noqa: E402

__all__ += ["DSRIFNode", "DSRLIFNode", "MPBNBaseNode", "MPBNLIFNode", "OTTTLIFNode",
            "SLTTLIFNode"]
from snnjax.neuron.adaptive import AdaptBaseNode, EIFNode, IzhikevichNode, QIFNode  # noqa: E402
from snnjax.neuron.lif_variants import CUBALIFNode, GatedLIFNode, KLIFNode, LIAFNode  # noqa: E402

__all__ += ["AdaptBaseNode", "CUBALIFNode", "EIFNode", "GatedLIFNode", "IzhikevichNode",
            "KLIFNode", "LIAFNode", "QIFNode"]
from snnjax.neuron.extra import ComplementaryLIFNode, HalfThresholdIFNode, ILIFNode  # noqa: E402

__all__ += ["ComplementaryLIFNode", "HalfThresholdIFNode", "ILIFNode"]
from snnjax.neuron.ilc import (  # noqa: E402
    ILCBaseNode, ILCCUBALIFNode, ILCConnection, ILCIFNode, ILCLIFNode,
)
from snnjax.neuron.noisy import (  # noqa: E402
    NoisyBaseNode, NoisyCUBALIFNode, NoisyILCBaseNode, NoisyILCCUBALIFNode,
    NoisyNonSpikingBaseNode, NoisyNonSpikingIFNode,
)
from snnjax.noise import powerlaw_psd_gaussian  # noqa: E402

__all__ += ["ILCBaseNode", "ILCCUBALIFNode", "ILCConnection", "ILCIFNode", "ILCLIFNode",
            "NoisyBaseNode", "NoisyCUBALIFNode", "NoisyILCBaseNode", "NoisyILCCUBALIFNode",
            "NoisyNonSpikingBaseNode", "NoisyNonSpikingIFNode", "powerlaw_psd_gaussian"]
