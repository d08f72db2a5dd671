"""Sharded runs on 4 virtual CPU devices (``tests/sharding_script.py`` in subprocesses, so the
rest of the suite keeps its single device): sharded results equal unsharded ones (values, input
and parameter gradients) for a sample of the core neurons on the scan and kernel (interpret)
paths under ``jax.jit`` with ``NamedSharding``, ``jax.set_mesh`` (explicit axes) and a user's
``shard_map``; outputs keep the input's sharding; compiled HLO has no collective for the input
gradient; coupled axes, uneven splits, other state shardings and random draws; a data-parallel
and an FSDP training step equal the single-device step (``examples/data_parallel.py``)."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent

# two groups of about 16 s each, one test (one subprocess) per group: the script runs once per
# suite, not once per xdist worker
GROUPS = {
    "neurons": ["neuron LIFNode scan", "neuron LIFNode pallas", "neuron ParametricLIFNode pallas",
                "neuron CUBALIFNode scan", "neuron FlexSN pallas",
                "init_state keeps the input's sharding", "compiled HLO", "time axis sharded",
                "Mosaic tail block per shard"],
    "couplings": ["uneven split", "state sharded differently", "PSN / SlidingPSN", "MPBN", "ILC",
                  "noisy neuron", "data-parallel and FSDP"],
}


@pytest.mark.parametrize("group", GROUPS)
def test_sharded(group: str) -> None:
    """Every check of ``group`` ran and passed (the script stops at the first failure)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-W", "ignore", str(HERE / "sharding_script.py"),
                           *GROUPS[group]], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode:
        pytest.fail(f"sharding_script.py failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    ran = [ln[3:] for ln in proc.stdout.splitlines() if ln.startswith("ok ")]
    missing = [n for n in GROUPS[group] if not any(r.startswith(n) for r in ran)]
    assert not missing, f"checks that did not run: {missing}\n{proc.stdout}"
