"""One registry of the public classes of ``snnjax.neuron`` and their golden cases.

Each :class:`Entry` says how to build a default instance, which golden files belong to the class
(``tests/golden/<prefix>__<case>.npz``), the checker that runs one case on a backend
(``check(case, backend)``, from ``golden_checks``), and whether the step is elementwise (eligible
for the fused Pallas kernels) or why not. ``tests/test_golden.py`` runs every golden case of every
entry on ``backend='scan'`` and the cases of the elementwise entries on ``backend='pallas'``.

Adding a neuron class: add one ``Entry`` to ``ENTRIES`` (``test_golden`` fails for a public class
without one, and for a golden file no entry claims).

Kernel path (``golden_cases(kernel_only=True)``): Pallas interpret mode on a CPU is slow, so by
default only the entry's ``kernel_cases`` run (one representative case, plus cases whose
constructor statics change the generated kernel: soft reset, detach_reset, decay_input=False,
another surrogate, train/eval); ``SNNJAX_ALL_GOLDEN=1`` runs every eligible case.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any, Callable

import jax
from flax import nnx

import golden_checks as gc
from golden_utils import case_names
from snnjax import neuron


@dataclasses.dataclass(frozen=True, eq=False)
class Entry:
    name: str
    # constructor kwargs of a default instance (required arguments; ``rngs`` is added by build)
    kwargs: dict = dataclasses.field(default_factory=dict)
    # golden checker ``check(case, backend)``; None: the class has no golden case
    check: Callable | None = None
    # golden-file prefix (default: the class name when there is a checker)
    prefix: str | None = None
    # True, or the reason the step cannot go through the fused kernels
    elementwise: bool | str = True
    abstract: bool = False
    # why a concrete class has no golden case (required when ``check`` is None and not abstract)
    no_golden: str | None = None
    # seed of the ``nnx.Rngs`` the constructor needs (None: it takes none)
    rngs: int | None = None
    # golden cases of another class that this entry's checker also runs
    extra_cases: tuple[str, ...] = ()
    # default kernel-path cases (None: ``<prefix>__default``, else the first case)
    kernel_cases: tuple[str, ...] | None = None
    # cases the kernel path cannot run (with the reason)
    not_kernel: dict = dataclasses.field(default_factory=dict)
    # kernel-path cases known to disagree with the reference (strict xfail, with the reason)
    kernel_xfail: dict = dataclasses.field(default_factory=dict)
    # per-step input shape [N, *] of the default instance (population classes fix the last axis)
    step_shape: tuple = (2, 5)
    # why the non-finite policy has an exception for this class (None: it follows it fully)
    nonfinite_exception: str | None = None
    # every output step depends on every input step (a NaN anywhere reaches all of them)
    mixes_time: bool = False

    @property
    def is_neuron(self) -> bool:
        return not self.abstract and self.elementwise != NOT_A_NEURON

    @property
    def cls(self) -> type:
        return getattr(neuron, self.name)

    @property
    def golden_prefix(self) -> str | None:
        if self.check is None:
            return None
        return self.prefix or self.name

    @property
    def is_elementwise(self) -> bool:
        return self.elementwise is True

    def cases(self) -> list[str]:
        """Every golden case this entry's checker runs."""
        if self.check is None:
            return []
        return case_names(self.golden_prefix) + list(self.extra_cases)

    def kernel_eligible(self) -> list[str]:
        if not self.is_elementwise:
            return []
        return [c for c in self.cases() if c not in self.not_kernel]

    def default_kernel_cases(self) -> list[str]:
        eligible = self.kernel_eligible()
        if not eligible:
            return []
        if self.kernel_cases is not None:
            missing = set(self.kernel_cases) - set(eligible)
            assert not missing, f"{self.name}: kernel_cases {sorted(missing)} are not eligible"
            return list(self.kernel_cases)
        default = f"{self.golden_prefix}__default"
        return [default if default in eligible else eligible[0]]


def E(name: str, **kw: Any) -> Entry:
    return Entry(name, **kw)


NOT_A_NEURON = "not a neuron module"
ABSTRACT = dict(abstract=True, elementwise="abstract base: no dynamics of its own")
ILC_REASON = "inter-layer connection: a linear map across neurons inside the step"
ILC = dict(kwargs=dict(act_dim=2, dec_pop_dim=3), rngs=0, step_shape=(2, 6))

ENTRIES: tuple[Entry, ...] = (
    # --- abstract bases ----------------------------------------------------------------------
    E("MemoryModule", **ABSTRACT),
    E("BaseNode", **ABSTRACT),
    E("SimpleBaseNode", **ABSTRACT),
    E("NonSpikingBaseNode", **ABSTRACT),
    # AdaptBaseNode: abstract, checked through a user subclass (golden_checks.QuadraticAdaptNode)
    # on the Izhikevich data; the subclass' step is elementwise.
    E("AdaptBaseNode", abstract=True, check=gc.check_adapt_subclass, prefix="IzhikevichNode",
      kernel_cases=("IzhikevichNode__soft_reset_atan",)),
    E("MPBNBaseNode", **ABSTRACT),
    E("ILCBaseNode", **ABSTRACT),
    E("NoisyBaseNode", **ABSTRACT),
    E("NoisyILCBaseNode", **ABSTRACT),
    E("NoisyNonSpikingBaseNode", **ABSTRACT),
    # --- not neurons -------------------------------------------------------------------------
    E("NeuronState", kwargs=dict(value=0.0), elementwise=NOT_A_NEURON,
      no_golden="the nnx.Variable type of a neuron's state, exercised by every neuron"),
    E("StateSequence", kwargs=dict(value=0.0), elementwise=NOT_A_NEURON,
      no_golden="the nnx.Variable type of recorded state sequences (store_v_seq)"),
    E("StackAxes", kwargs=dict(value=0), elementwise=NOT_A_NEURON,
      no_golden="the nnx.Variable type of a neuron's stack marker (tests/test_checkpoint.py)"),
    E("ILCConnection", kwargs=dict(act_dim=2, dec_pop_dim=3), rngs=0, elementwise=NOT_A_NEURON,
      no_golden="the ILC nodes' grouped linear map; its golden values are the ILC nodes' "
                "param_conn_* / grad_param_conn_*"),
    E("FlexSNKernel", kwargs=dict(core=gc.lif_core, num_inputs=1, num_states=1, num_outputs=1),
      elementwise=NOT_A_NEURON,
      no_golden="the functional kernel FlexSN runs; covered by the FlexSN golden cases"),
    # --- IF / LIF / PLIF (was test_core_golden) ----------------------------------------------
    E("IFNode", check=gc.check_core, kernel_cases=("IFNode__soft_reset_detach",)),
    E("LIFNode", check=gc.check_core,
      kernel_cases=("LIFNode__float32_soft_detach", "LIFNode__piecewise_exp")),
    E("ParametricLIFNode", check=gc.check_core,
      kernel_cases=("ParametricLIFNode__init_tau_detach",)),
    E("SimpleIFNode", check=gc.check_core, kernel_cases=("SimpleIFNode__soft_reset",)),
    E("SimpleLIFNode", kwargs=dict(tau=2.0, decay_input=True), check=gc.check_core,
      kernel_cases=("SimpleLIFNode__detach_atan",)),
    E("NonSpikingIFNode", check=gc.check_nonspiking,
      kernel_cases=("NonSpikingIFNode__decode_max_abs_mem",)),
    E("NonSpikingLIFNode", check=gc.check_nonspiking,
      kernel_cases=("NonSpikingLIFNode__tau_decode_mean_mem",)),
    # --- adaptive (was test_adaptive) --------------------------------------------------------
    E("IzhikevichNode", check=gc.check_adaptive,
      kernel_cases=("IzhikevichNode__detach_init_state",)),
    E("QIFNode", check=gc.check_adaptive, kernel_cases=("QIFNode__params",)),
    E("EIFNode", check=gc.check_adaptive, kernel_cases=("EIFNode__params",)),
    # --- LIF variants (was test_lif_variants) ------------------------------------------------
    E("KLIFNode", check=gc.check_lif_variant,
      kernel_cases=("KLIFNode__soft_scale_reset_decay_input_false",)),
    E("CUBALIFNode", check=gc.check_lif_variant, kernel_cases=("CUBALIFNode__soft_reset",)),
    E("LIAFNode", kwargs=dict(act=jax.nn.relu, threshold_related=True), check=gc.check_liaf,
      kernel_cases=("LIAFNode__relu_threshold_related_false",)),
    E("GatedLIFNode", kwargs=dict(T=4), rngs=0, check=gc.check_glif,
      elementwise="gates broadcast per channel over [T, N, C, H, W] with a constructor-fixed T"),
    # --- extra neurons (was test_extra_neurons) ----------------------------------------------
    E("HalfThresholdIFNode", check=gc.check_extra,
      kernel_cases=("HalfThresholdIFNode__vth_detach",)),
    E("ILIFNode", check=gc.check_extra, kernel_cases=("ILIFNode__params",)),
    E("ComplementaryLIFNode", check=gc.check_clif,
      kernel_cases=("ComplementaryLIFNode__params_train",)),
    # --- online (was test_dsr_online) --------------------------------------------------------
    E("OTTTLIFNode", check=gc.check_online, kernel_cases=("OTTTLIFNode__default_train",)),
    E("SLTTLIFNode", check=gc.check_online, kernel_cases=("SLTTLIFNode__params_train",)),
    # --- DSR (was test_dsr_online) -----------------------------------------------------------
    E("DSRIFNode", check=gc.check_dsr,
      elementwise="whole-sequence forward with a rate-based custom_vjp"),
    E("DSRLIFNode", check=gc.check_dsr,
      elementwise="whole-sequence forward with a rate-based custom_vjp"),
    # --- PSN family (was test_psn) -----------------------------------------------------------
    E("PSN", mixes_time=True, kwargs=dict(T=4), rngs=0, check=gc.check_psn,
      elementwise="a [T, T] matrix product over time, not a recurrence"),
    E("MaskedPSN", mixes_time=True, kwargs=dict(k=2, T=4), rngs=0, check=gc.check_psn,
      elementwise="a masked [T, T] matrix product over time"),
    E("SlidingPSN", mixes_time=True, kwargs=dict(k=3), check=gc.check_psn,
      elementwise="a causal convolution over time"),
    # --- FlexSN (was test_flexsn) ------------------------------------------------------------
    E("FlexSN", kwargs=dict(core=gc.lif_core, num_states=1), check=gc.check_flexsn,
      nonfinite_exception="a user-written step: its own arithmetic decides what +-inf give",
      extra_cases=("LIFNode__atan",),
      kernel_cases=("FlexSN__lif_core", "FlexSN__plif_core_static_param",
                    "FlexSN__two_inputs_two_outputs")),
    E("NativeFlexSN",
      kwargs=dict(step=gc.native_lif_step, init_state=gc.native_lif_init, params={"tau": 2.0}),
      nonfinite_exception="a user-written step: its own arithmetic decides what +-inf give",
      no_golden="FlexSN.from_step's module; the reference has no such class (its golden data "
                "are FlexSN's)"),
    # --- MPBN (was test_mpbn) ----------------------------------------------------------------
    E("MPBNLIFNode", kwargs=dict(out_features=4), check=gc.check_mpbn, step_shape=(3, 4),
      nonfinite_exception="batch statistics over an infinite value are NaN, as in any batch "
                          "norm: an inf input makes its whole channel NaN",
      elementwise="batch normalisation reduces over the batch inside the step"),
    # --- ILC and noisy (was test_ilc_noisy) --------------------------------------------------
    E("ILCIFNode", **ILC, check=gc.check_ilc,
      elementwise=ILC_REASON),
    E("ILCLIFNode", **ILC, check=gc.check_ilc,
      elementwise=ILC_REASON),
    E("ILCCUBALIFNode", **ILC, check=gc.check_ilc,
      elementwise=ILC_REASON),
    E("NoisyCUBALIFNode", kwargs=dict(num_node=37, is_training=False), rngs=0, step_shape=(2, 37),
      check=gc.check_noisy_spiking, kernel_cases=("NoisyCUBALIFNode__eval",),
      kernel_xfail={"NoisyCUBALIFNode__train": (
          "float32 noise in a float64 run: lax.scan (like the reference) multiplies "
          "sigma * noise in float32 (weakly typed Python-float params), the kernel promotes the "
          "noise to float64 first; out differs by ~2e-8")}),
    E("NoisyILCCUBALIFNode", **dict(ILC, kwargs=dict(act_dim=2, dec_pop_dim=3, is_training=False)),
      check=gc.check_noisy_spiking, elementwise=ILC_REASON),
    E("NoisyNonSpikingIFNode", kwargs=dict(num_node=37, is_training=False), rngs=0,
      step_shape=(2, 37),
      check=gc.check_noisy_nonspiking, kernel_cases=("NoisyNonSpikingIFNode__eval",)),
)

_BY_NAME = {e.name: e for e in ENTRIES}
assert len(_BY_NAME) == len(ENTRIES), "duplicate registry entries"


def entries() -> list[Entry]:
    return list(ENTRIES)


def entry(name: str) -> Entry:
    return _BY_NAME[name]


def public_classes() -> list[str]:
    """Every name in ``snnjax.neuron.__all__`` that is a class."""
    return sorted(n for n in neuron.__all__ if inspect.isclass(getattr(neuron, n, None)))


def all_golden() -> bool:
    return os.environ.get("SNNJAX_ALL_GOLDEN", "") not in ("", "0")


def golden_cases(kernel_only: bool = False, all_cases: bool | None = None
                 ) -> list[tuple[Entry, str]]:
    """``(entry, case_name)`` for every golden case of every entry; ``kernel_only``: the cases of
    the elementwise entries for the kernel path (the entries' default ``kernel_cases``, or every
    eligible case with ``all_cases`` / ``SNNJAX_ALL_GOLDEN=1``)."""
    all_cases = all_golden() if all_cases is None else all_cases
    out = []
    for e in ENTRIES:
        if kernel_only:
            names = e.kernel_eligible() if all_cases else e.default_kernel_cases()
        else:
            names = e.cases()
        out.extend((e, n) for n in names)
    return out


def case_id(e: Entry, name: str) -> str:
    """Test id of a case: the case name, prefixed with the entry for cases of another class."""
    return name if name.split("__")[0] == e.name else f"{e.name}-{name}"


def ctor_params(cls: type) -> dict:
    """The constructor's named parameters (``inspect.signature(cls)`` of an NNX module shows only
    ``*args, **kwargs``), following ``*args, **kwargs`` forwarding up the MRO."""
    out: dict = {}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        for name, p in params.items():
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                out.setdefault(name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


def build(e: Entry, backend: str | None = None, **overrides: Any) -> Any:
    """A default instance of the entry's class (``backend`` passed when the class takes one)."""
    kwargs = {**e.kwargs, **overrides}
    if e.rngs is not None and "rngs" not in kwargs:
        kwargs["rngs"] = nnx.Rngs(e.rngs)
    return gc.construct(e.cls, backend, kwargs)
