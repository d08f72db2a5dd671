"""Every golden case (SpikingJelly 2.0.0 reference data, ``tests/golden``) of every neuron class
registered in ``tests/registry.py``.

- ``test_golden[<case>]``: the case on ``backend='scan'`` (the reference subset:
  ``pytest -k "golden and not pallas"``).
- ``test_golden_pallas[<case>]``: the cases of the elementwise classes on ``backend='pallas'``
  (fused kernels; Pallas interpret mode without a GPU). By default a representative subset
  (the entries' ``kernel_cases``); ``SNNJAX_ALL_GOLDEN=1`` runs every eligible case.
- registry tests: every public class of ``snnjax.neuron`` has an entry, every concrete entry has
  golden cases or says why not, every golden neuron file is claimed by an entry. (``-k golden``
  matches this module's name, so these sub-second tests are in the reference subset too.)
"""
import os
import jax.numpy as jnp
import pytest

import golden_checks
import registry
from golden_utils import GOLDEN, load_case
from snnjax import kernels

SCAN = registry.golden_cases()
KERNEL = registry.golden_cases(kernel_only=True)
KERNEL_BUDGET = 25   # default kernel-path cases (interpret mode is slow on a CPU)


def _ids(cases):
    return [registry.case_id(e, n) for e, n in cases]


# The API-consistency checks (the pure single-step loop, the stateful call in every step mode)
# run on the first case of each class and of each class's every-few cases; the other cases
# check the pure multi-step forward, states and gradients and one stateful mode (all against
# the reference data). SNNJAX_ALL_GOLDEN=1: every check on every case.
_FIRST = {}
for _e, _n in SCAN:
    _FIRST.setdefault(_e.name, []).append(_n)
FULL_API_EVERY = 4


@pytest.mark.parametrize("entry, name", SCAN, ids=_ids(SCAN))
def test_golden(entry, name):
    full = registry.all_golden() or _FIRST[entry.name].index(name) % FULL_API_EVERY == 0
    with golden_checks.api_checks(full):
        entry.check(load_case(name), "scan")


def _kernel_params(cases):
    out = []
    for e, n in cases:
        marks = ([pytest.mark.xfail(strict=True, reason=e.kernel_xfail[n])]
                 if n in e.kernel_xfail else [])
        out.append(pytest.param(e, n, id=registry.case_id(e, n), marks=marks))
    return out


@pytest.mark.parametrize("entry, name", _kernel_params(KERNEL))
def test_golden_pallas(entry, name):
    # the single-step loop runs no kernel (test_golden covers it); one stateful mode, 'm'
    with golden_checks.api_checks(registry.all_golden()):
        entry.check(load_case(name), os.environ.get("SNNJAX_KERNEL_BACKEND", "pallas"))


# --- the registry itself ---------------------------------------------------------------------

def test_registry_covers_every_public_class():
    public = set(registry.public_classes())
    names = {e.name for e in registry.entries()}
    assert not public - names, f"public classes without an entry: {sorted(public - names)}"
    assert not names - public, f"entries that are no public class: {sorted(names - public)}"


def test_registered_classes_have_golden_cases_or_a_reason():
    for e in registry.entries():
        if e.check is None:
            assert e.abstract or e.no_golden, f"{e.name}: no golden checker and no reason"
            continue
        assert not e.no_golden, f"{e.name}: has a checker but says {e.no_golden!r}"
        assert e.cases(), f"{e.name}: no golden files tests/golden/{e.golden_prefix}__*.npz"
        assert e.is_elementwise or isinstance(e.elementwise, str) and e.elementwise, e.name


def test_every_golden_neuron_file_is_claimed():
    neuron_files = {p.stem for p in GOLDEN.glob("*.npz")
                    if not p.stem.startswith(("surrogate__", "powerlaw_psd_gaussian__"))}
    claimed = {n for e in registry.entries() for n in e.cases()}
    assert not neuron_files - claimed, f"files no entry runs: {sorted(neuron_files - claimed)}"
    assert not claimed - neuron_files, f"cases without a file: {sorted(claimed - neuron_files)}"


def test_golden_case_counts():
    """The case counts the family test files pinned (a deleted golden file fails here)."""
    def n(*names):
        return sum(len(registry.entry(c).cases()) for c in names)
    assert n("PSN", "MaskedPSN", "SlidingPSN") == 10
    assert n("DSRIFNode", "DSRLIFNode") == 4 and n("OTTTLIFNode", "SLTTLIFNode") == 8
    assert n("MPBNLIFNode") == 10


def test_kernel_path_selection():
    """Every elementwise class with golden cases runs at least one on the kernel path; the
    default selection stays within the CI budget."""
    default = registry.golden_cases(kernel_only=True, all_cases=False)
    assert len(default) <= KERNEL_BUDGET, len(default)
    covered = {e.name for e, _ in default}
    for e in registry.entries():
        if e.is_elementwise and e.cases():
            assert e.name in covered, e.name
    everything = registry.golden_cases(kernel_only=True, all_cases=True)
    assert {(e.name, n) for e, n in default} <= {(e.name, n) for e, n in everything}


@pytest.mark.parametrize("entry", [e for e in registry.entries() if not e.abstract],
                         ids=lambda e: e.name)
def test_default_instances_build(entry):
    assert isinstance(registry.build(entry), entry.cls)


@pytest.mark.parametrize("entry", [e for e in registry.entries()
                                   if e.is_elementwise and not e.abstract],
                         ids=lambda e: e.name)
def test_elementwise_entries_lower_to_kernels(entry):
    """An entry marked elementwise builds and its step passes the kernel generator's check."""
    m = registry.build(entry, "scan")
    x = jnp.ones((3, 4), jnp.float32)
    kernels.check_step(m.bound_step(), m.init_state(x[0]), x, m.params(),
                       kernels.Config(interpret=True))
