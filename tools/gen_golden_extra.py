"""Generate tests/golden_extra/*.npz: SpikingJelly 2.0.0 / PyTorch reference numbers for
snnjax.layer, snnjax.encoding and the losses in snnjax.functional.

Run in a separate environment with PyTorch (CPU is enough) and SpikingJelly 2.0.0, e.g.

    python -m venv /tmp/sjref && /tmp/sjref/bin/pip install torch numpy loguru tqdm
    /tmp/sjref/bin/pip install --no-deps spikingjelly==2.0.0
    /tmp/sjref/bin/python tools/gen_golden_extra.py

The committed files were made with torch 2.5.1+cu124 (PyPI's default wheel, run on the CPU) and
spikingjelly 2.0.0 on 2026-12-02. Layouts are stored as the reference has them (channels first);
the tests transpose.
"""
from __future__ import annotations

import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import encoding, functional, layer

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "golden_extra"


def save(name: str, **arrays) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / f"{name}.npz", **{k: np.asarray(v) for k, v in arrays.items()})


def t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


def losses(rng: np.random.Generator) -> None:
    x3 = rng.normal(size=(4, 5, 3)).astype(np.float32)            # [T, N, C]
    y3 = rng.integers(0, 3, size=(5,))
    x4 = rng.normal(size=(3, 2, 4, 5)).astype(np.float32)         # [T, N, C, L]
    y4 = rng.integers(0, 4, size=(2, 5))
    xs = t(x3).requires_grad_()
    tet3 = functional.temporal_efficient_training_cross_entropy(xs, t(y3))
    tet3.backward()
    tet4 = functional.temporal_efficient_training_cross_entropy(t(x4), t(y4))
    spikes = (rng.random((6, 3, 4)) < 0.4).astype(np.float32)
    spikes[0] = 0.0                                                # a silent sample
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=6)]
    sim = {}
    for kernel, args in [("linear", ()), ("polynomial", (2,)), ("sigmoid", (0.5,)),
                         ("gaussian", (1.5,))]:
        sim[f"kernel_{kernel}"] = functional.kernel_dot_product(
            t(spikes.reshape(6, -1)), t(spikes.reshape(6, -1)), kernel, *args).numpy()
    # 'bce' is left out: the reference's cosine reaches 1 + 1e-7 on the diagonal and
    # F.binary_cross_entropy raises (docs/differences.md); the tests check it against NumPy
    for loss in ("mse", "l1"):
        sim[f"loss_linear_{loss}"] = functional.spike_similar_loss(t(spikes), t(labels), "linear",
                                                                   loss).numpy()
    sim["loss_gaussian_mse"] = functional.spike_similar_loss(t(spikes), t(labels), "gaussian",
                                                             "mse", 1.5).numpy()
    fsi_in = (rng.random((3, 4, 7)) < 0.3).astype(np.float32)
    save("losses", tet3_x=x3, tet3_y=y3, tet3=tet3.detach().numpy(), tet3_grad=xs.grad.numpy(),
         tet4_x=x4, tet4_y=y4, tet4=tet4.numpy(), spikes=spikes, labels=labels,
         fsi_in=fsi_in, fsi_out=functional.first_spike_index(t(fsi_in)).numpy(), **sim)


def encoders(rng: np.random.Generator) -> None:
    x = rng.random((3, 5)).astype(np.float32)
    x[0, :3] = [0.0, 1.0, 0.5]
    out = {"x": x}
    for T in (1, 6, 9):
        for fn in ("linear", "log"):
            enc = encoding.LatencyEncoder(T, fn)
            out[f"latency_{fn}_{T}"] = np.stack([enc(t(x)).numpy() for _ in range(T + 2)])
    K = 5
    xw = (rng.random((4, 3)) * (1 - 2.0 ** -K)).astype(np.float32)
    xw[0, :2] = [0.0, 1 - 2.0 ** -K]
    enc = encoding.WeightedPhaseEncoder(K)
    out["phase_x"] = xw
    out["phase"] = np.stack([enc(t(xw)).numpy() for _ in range(K + 2)])
    pattern = (rng.random((4, 3)) < 0.5).astype(np.float32)
    enc = encoding.PeriodicEncoder(t(pattern))
    out["periodic_in"] = pattern
    out["periodic"] = np.stack([enc(t(pattern)).numpy() for _ in range(7)])
    save("encoders", **out)


def layers(rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 3, 7, 8)).astype(np.float32)          # [N, C, H, W]
    out = {"x": x}
    for i, (k, s, p, d, ceil) in enumerate([(2, None, 0, 1, False), (3, 2, 1, 1, True),
                                            ((3, 2), (2, 1), (1, 0), (2, 1), True),
                                            (2, 3, 1, 1, True)]):
        m = layer.MaxPool2d(k, s, p, d, ceil_mode=ceil)
        out[f"max_{i}"] = m(t(x)).numpy()
    for i, (k, s, p, ceil, cip, div) in enumerate([(3, 2, 1, True, True, None),
                                                   (3, 2, 1, True, False, None),
                                                   ((3, 2), (2, 3), (1, 1), True, True, None),
                                                   (2, 1, 1, False, True, 3)]):
        m = torch.nn.AvgPool2d(k, s, p, ceil, cip, div)
        out[f"avg_{i}"] = m(t(x)).numpy()
    for i, size in enumerate([1, 3, (2, 5), (None, 4)]):
        out[f"adaptive_{i}"] = layer.AdaptiveAvgPool2d(size)(t(x)).numpy()
    # BatchNorm2d in multi-step mode: two training steps then eval
    bn = layer.BatchNorm2d(3, momentum=0.2, step_mode="m")
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
    xs = [rng.normal(size=(2, 4, 3, 5, 3)).astype(np.float32) * 3 - 1 for _ in range(2)]
    out["bn_x0"], out["bn_x1"] = xs
    out["bn_y0"], out["bn_y1"] = [bn(t(xi)).detach().numpy() for xi in xs]
    out["bn_running_mean"] = bn.running_mean.numpy()
    out["bn_running_var"] = bn.running_var.numpy()
    bn.eval()
    out["bn_eval"] = bn(t(xs[0])).detach().numpy()
    # convolution with a given weight (OIHW), stride/padding/dilation/groups
    w = rng.normal(size=(6, 2, 3, 2)).astype(np.float32)
    b = rng.normal(size=(6,)).astype(np.float32)
    xc = rng.normal(size=(2, 4, 9, 7)).astype(np.float32)
    out["conv_x"], out["conv_w"], out["conv_b"] = xc, w, b
    out["conv_y"] = F.conv2d(t(xc), t(w), t(b), (2, 1), (1, 0), (1, 2), 2).numpy()
    for mode in ("reflect", "replicate", "circular"):
        conv = torch.nn.Conv2d(4, 6, (3, 2), 1, 1, 1, 2, True, padding_mode=mode)
        with torch.no_grad():
            conv.weight.copy_(t(w))
            conv.bias.copy_(t(b))
            out[f"conv_{mode}"] = conv(t(xc)).numpy()
    save("layers", **out)


def main() -> None:
    rng = np.random.default_rng(2026)
    losses(rng)
    encoders(rng)
    layers(rng)
    print("written to", OUT)


if __name__ == "__main__":
    main()
