"""examples/fashion_cnn.py (SpikingJelly's convolutional Fashion-MNIST tutorial, ported) in its
--quick form: it trains, records per-layer firing rates under jit and writes the plot."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fashion_cnn.py"


def _load():
    spec = importlib.util.spec_from_file_location("fashion_cnn_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fashion_cnn_example_quick(tmp_path, capsys):
    mod = _load()
    out = tmp_path / "rates.png"
    res = mod.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed and "firing rate" in printed

    # it trains: the TET loss falls, and the training batch is classified far above chance
    losses = np.asarray(res["losses"])
    assert losses.shape == (40,) and np.all(np.isfinite(losses))
    assert losses[-5:].mean() < 0.8 * losses[:5].mean(), losses
    assert res["train_accuracy"] > 0.3, res["train_accuracy"]   # chance: 0.1 (64 images)

    # the monitor found the three IFNode layers of the nnx.Sequential, one record per test batch
    neurons = ["conv_fc.layers.1", "conv_fc.layers.4", "conv_fc.layers.9"]
    records = res["records"]
    assert sorted(records) == neurons
    for name in neurons:
        assert len(records[name]) == 1
        rec = records[name][0]
        rate = float(rec["firing_rate"])
        count = np.asarray(rec["spike_count"])
        assert rec["num_steps"] == 2 and count.shape[0] == 64
        assert 0.0 <= rate <= 1.0
        np.testing.assert_allclose(count.mean() / rec["num_steps"], rate, rtol=1e-5)
        assert np.all((count >= 0) & (count <= rec["num_steps"]))
        assert res["rates"][name] == pytest.approx(rate, rel=1e-6)
    assert any(r > 0 for r in res["rates"].values())    # the network spikes

    # the plot
    assert res["out"] == str(out) and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    assert matplotlib.image.imread(out).ndim == 3


def test_fashion_like_data_is_deterministic_and_fashion_mnist_shaped():
    mod = _load()
    x, y = mod.make_fashion_like(30, seed=3)
    x2, y2 = mod.make_fashion_like(30, seed=3)
    assert x.shape == (30, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 3))
    assert not np.array_equal(x, mod.make_fashion_like(30, seed=4)[0])
    assert len(mod.CLASSES) == 10
