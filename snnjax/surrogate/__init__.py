"""Surrogate spike functions (SpikingJelly 2.0.0 ``activation_based.surrogate``) for JAX.

Each surrogate is a frozen, hashable dataclass: ``sg(x)`` emits spikes with a surrogate gradient
(or the smooth primitive when ``spiking=False``); ``sg.derivative(x)`` and ``sg.primitive(x)`` are
plain ``jnp`` functions.  See :class:`SurrogateFunction`.
"""

from .base import SurrogateFunction, heaviside, propagate_nan
from .functions import (
    ATan,
    DeterministicPass,
    Erf,
    FakeNumericalGradient,
    LeakyKReLU,
    LogTailedReLU,
    MultiLevelSpikeCount,
    NonzeroSignLogAbs,
    PiecewiseExp,
    PiecewiseLeakyReLU,
    PiecewiseQuadratic,
    PoissonPass,
    QPseudoSpike,
    Rect,
    S2NN,
    Sigmoid,
    SoftSign,
    SquarewaveFourierSeries,
    SuperSpike,
)
from . import functions as _functions
from .registry import SURROGATES, fused_surrogate_id, get_surrogate

__all__ = ["heaviside", "propagate_nan", "SurrogateFunction"]
__all__ += _functions.__all__
__all__ += ["SURROGATES", "get_surrogate", "fused_surrogate_id"]
