"""Further neurons as pure step functions: I-LIF (integer spike counts) and CLIF
(complementary LIF). HalfThresholdIFNode is a soft-reset IF and uses
:func:`snnjax.steps.spiking_step` with :func:`snnjax.steps.if_charge`.

Signature: ``step(state, x, params, *, ...) -> (state, out)``; ``state`` a dict of ``[N, *]``
arrays, ``params`` numeric values (scalars or arrays broadcastable to ``[N, *]``, possibly
traced); keyword-only arguments are static.
"""
from __future__ import annotations

import jax

from snnjax.steps.common import Array, SpikeFn, cast_out, reset, state_dtype
from snnjax.steps.integrate_and_fire import lif_charge


def ilif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn,
              detach_reset: bool) -> tuple[dict, Array]:
    """Integer-valued LIF (soft reset, ``decay_input=False``).

    ``H = V - V / tau + X``, ``C = count(H / theta)`` (``MultiLevelSpikeCount``:
    ``round(clip(H / theta, 0, D))`` forward, windowed straight-through backward),
    ``V' = H - C * theta`` (``C`` without gradient in the reset with ``detach_reset``).
    Output: the count ``C`` in ``x``'s dtype. Params ``tau``, ``v_threshold``. Shapes ``[N, *]``.
    """
    v = state["v"]
    h = lif_charge(v, x.astype(state_dtype(x.dtype)), params, decay_input=False, soft_reset=True)
    theta = params["v_threshold"]
    count = surrogate(h / theta)
    v_next = reset(h, count, theta, 0.0, soft_reset=True, detach_reset=detach_reset)
    return {"v": v_next.astype(v.dtype)}, cast_out(count, x)


def clif_step(state: dict, x: Array, params: dict, *, surrogate: SpikeFn) -> tuple[dict, Array]:
    """Complementary LIF (CLIF, ICML 2024).

    ``H = V - V / tau + X``, ``M~ = M * sigmoid(H / tau)``, ``S = sg(H - theta)``, ``M' = M~ + S``,
    ``V' = H - S * (theta + sigmoid(M'))``. State ``{"v", "m"}``; params ``tau``, ``v_threshold``.
    The spike is not detached anywhere. Output ``S`` in ``x``'s dtype. Shapes ``[N, *]``.
    """
    v, m = state["v"], state["m"]
    tau, theta = params["tau"], params["v_threshold"]
    h = lif_charge(v, x.astype(state_dtype(x.dtype)), params, decay_input=False, soft_reset=True)
    decayed = m * jax.nn.sigmoid(h / tau)
    spike = surrogate(h - theta)
    m_next = decayed + spike
    v_next = h - spike * (theta + jax.nn.sigmoid(m_next))
    return {"v": v_next.astype(v.dtype), "m": m_next.astype(m.dtype)}, cast_out(spike, x)


__all__ = ["clif_step", "ilif_step"]
