"""examples/online_training.py in its CI-sized form (--small): runs in seconds."""
import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "online_training.py"


def _load():
    spec = importlib.util.spec_from_file_location("online_training_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_online_training_example_small(capsys):
    res = _load().main(["--small"])
    printed = capsys.readouterr().out
    # memory reported for two values of T, for online and BPTT
    assert "T=32 / T=4" in printed and printed.count("online (ottt") == 2
    online, bptt = res["memory"]["online"], res["memory"]["bptt"]
    assert online[1] == online[0], online          # does not grow with T
    assert bptt[1] > 4 * bptt[0], bptt             # grows with T (8x the steps)
    assert bptt[1] > online[1]
    # online gradient == jax.grad of the same loss through the scan
    assert res["grad_error"] < 1e-5
    # and it trains
    assert res["accuracy"] > res["accuracy_before"] + 0.3 and res["accuracy"] > 0.8


def test_online_training_example_sltt_memory():
    res = _load().main(["--small", "--neuron", "sltt", "--steps", "0"])
    online, bptt = res["memory"]["online"], res["memory"]["bptt"]
    assert online[1] == online[0] and bptt[1] > 4 * bptt[0]
    assert res["grad_error"] < 1e-5
