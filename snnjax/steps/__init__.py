"""Pure neuron step functions, grouped by family. No Flax: usable from plain JAX or Equinox.
"""
from snnjax.steps.common import (
    BoundStep, cast_out, fire, fire_and_reset, fire_for_state, reset, rest_level, saturate,
    state_dtype,
)
from snnjax.steps.integrate_and_fire import (
    decode_membrane, DECODES, if_charge, if_step, integrator_step, lif_charge, lif_step,
    nonspiking_if_step, nonspiking_lif_charge, nonspiking_lif_step, plif_charge, plif_step,
    simple_lif_charge, simple_lif_step, spiking_step,
)
from snnjax.steps.psn import (
    masked_psn_multi_step, masked_psn_step, masked_psn_weight, psn_multi_step,
    sliding_psn_gemm_weight, sliding_psn_multi_step, sliding_psn_step,
)
from snnjax.steps.dsr import (
    clamp_threshold, dsr_if_sequence, dsr_if_step, dsr_lif_sequence, dsr_lif_step,
)
from snnjax.steps.mpbn import mpbn_lif_step, mpbn_step
from snnjax.steps.online import ottt_lif_step, sltt_lif_step
from snnjax.steps.adaptive import (
    adaptation_update, adaptive_step, clamp_membrane, eif_charge, eif_step, izhikevich_charge,
    izhikevich_step, membrane_bound, qif_charge, qif_step,
)
from snnjax.steps.lif_variants import (
    cuba_charge, cuba_lif_step, gated_lif_input, gated_lif_layout, gated_lif_step, GATED_LIF_STEP_PARAMS, klif_step,
    liaf_step,
)
from snnjax.steps.extra import clif_step, ilif_step
from snnjax.steps.flexsn import core_step, flexsn_step
from snnjax.steps.ilc import (
    ilc_connection, ilc_if_charge, ilc_lif_charge, noise_term, population_step,
)
from snnjax.steps.noisy import broadcast_noise, NOISY_DECODES, noisy_integrator_step
