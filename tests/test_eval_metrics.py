"""Metrics of the evaluation: PSNR / SSIM against torchmetrics, LPIPS from a local weight file."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from foresplat.evaluate.lpips import ARCHS, LPIPS_SCALE, LPIPS_SHIFT, load_lpips
from foresplat.evaluate.metrics import MAX_PSNR, psnr, ssim


def _images(seed: int, c: int = 3, h: int = 40, w: int = 36) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(c, h, w, 3, generator=g)


def test_psnr_matches_definition_and_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.image")
    a, b = _images(0), _images(1)
    got = psnr(a, b)
    assert got.shape == (3,)
    for i in range(3):
        mse = ((a[i] - b[i]) ** 2).mean()
        assert got[i].item() == pytest.approx(-10 * math.log10(mse.item()), rel=1e-5)
        ref = tm.peak_signal_noise_ratio(a[i], b[i], data_range=1.0)
        assert got[i].item() == pytest.approx(ref.item(), rel=1e-5)
    assert psnr(a, a)[0].item() == pytest.approx(MAX_PSNR)
    # predictions are clamped to [0, 1] before scoring
    assert torch.allclose(psnr(a * 3 - 1, b), psnr((a * 3 - 1).clamp(0, 1), b))


def test_ssim_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.image")
    a = _images(2)
    b = (a + 0.1 * _images(3)).clamp(0, 1)
    got = ssim(a, b)
    ref = torch.stack([tm.structural_similarity_index_measure(
        a[i:i + 1].permute(0, 3, 1, 2), b[i:i + 1].permute(0, 3, 1, 2), data_range=1.0,
        gaussian_kernel=True, sigma=1.5, kernel_size=11) for i in range(3)])
    # torchmetrics pads/crops the border differently from pytorch-msssim's valid convolution
    assert torch.allclose(got, ref, atol=3e-3)
    assert torch.allclose(ssim(a, a), torch.ones(3), atol=1e-5)
    assert bool((ssim(a, b) < 1).all())


def test_metrics_reject_bad_input():
    a = _images(0)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, a[:, :, :-1])
    with pytest.raises(ValueError, match="pred"):
        psnr(a[..., :2], a[..., :2])
    bad = a.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ssim(bad, a)


def _random_lpips_state(arch: str, layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for `arch` in one of the supported key layouts (lin weights non-negative)."""
    g = torch.Generator().manual_seed(seed)
    spec = ARCHS[arch]
    state = {}
    taps = sorted(spec.taps)
    for i, (cin, cout, k, _, _) in spec.convs.items():
        w = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        b = torch.randn(cout, generator=g) * 0.01
        if layout == "lpips":
            slice_no = 1 + sum(1 for t in taps if t < i)
            prefix = f"net.slice{slice_no}.{i}"
        else:
            prefix = f"features.{i}"
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = w, b
    for k, tap in enumerate(taps):
        ch = spec.convs[max(i for i in spec.convs if i < tap)][1]
        w = torch.rand(1, ch, 1, 1, generator=g)
        state[f"lin{k}.model.1.weight" if layout == "lpips" else f"lin{k}.weight"] = w
    return state


@pytest.mark.parametrize("arch", ["alex", "vgg"])
def test_lpips_properties_and_layouts(tmp_path, arch):
    state = _random_lpips_state(arch, "lpips")
    torch.save(state, tmp_path / "w.pth")
    model = load_lpips(tmp_path / "w.pth")
    assert model.arch.name == arch
    a, b = _images(4, c=2, h=40, w=44), _images(5, c=2, h=40, w=44)
    d_ab = model(a, b)
    assert d_ab.shape == (2,) and bool((d_ab > 0).all())
    assert torch.allclose(model(a, a), torch.zeros(2), atol=1e-6)
    assert torch.allclose(model(b, a), d_ab, rtol=1e-4)
    # a small perturbation is closer than an unrelated image
    near = (a + 0.02 * (b - 0.5)).clamp(0, 1)
    assert bool((model(a, near) < d_ab).all())
    # torchvision-style keys give the same metric
    renamed = {}
    for key, v in state.items():
        if key.startswith("net.slice"):
            idx = key.split(".")[2]
            renamed[f"features.{idx}.{key.split('.')[-1]}"] = v
        else:
            renamed[key.replace(".model.1", "")] = v
    torch.save({"state_dict": renamed}, tmp_path / "tv.pt")
    assert torch.allclose(load_lpips(tmp_path / "tv.pt")(a, b), d_ab, rtol=1e-5)


def test_lpips_first_layer_against_hand_computation(tmp_path):
    """Only lin0 non-zero: LPIPS = spatial mean of sum_c w_c (unit-normalised relu(conv0) difference)^2."""
    state = _random_lpips_state("alex", "lpips", seed=3)
    for k in range(1, 5):
        state[f"lin{k}.model.1.weight"].zero_()
    torch.save(state, tmp_path / "w.pth")
    model = load_lpips(tmp_path / "w.pth")
    a, b = _images(6, c=1, h=48, w=48), _images(7, c=1, h=48, w=48)
    shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)

    def feat(x):
        x = (x.permute(0, 3, 1, 2) * 2 - 1 - shift) / scale
        f = F.relu(F.conv2d(x, state["net.slice1.0.weight"], state["net.slice1.0.bias"], stride=4, padding=2))
        return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    w = state["lin0.model.1.weight"]
    expect = ((feat(a) - feat(b)) ** 2 * w).sum(1).mean(dim=(1, 2))
    assert torch.allclose(model(a, b), expect, rtol=1e-5)


def test_lpips_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file"):
        load_lpips(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_lpips(tmp_path / "junk.pth")
    state = _random_lpips_state("alex", "lpips")
    del state["lin3.model.1.weight"]
    torch.save(state, tmp_path / "nolin.pth")
    with pytest.raises(ValueError, match="lin3"):
        load_lpips(tmp_path / "nolin.pth")
    state = _random_lpips_state("alex", "lpips")
    state["net.slice2.3.weight"] = torch.zeros(5, 64, 5, 5)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="layer 3 weight"):
        load_lpips(tmp_path / "shape.pth")
    torch.save({"features.1.weight": torch.zeros(3)}, tmp_path / "arch.pth")
    with pytest.raises(ValueError, match="neither AlexNet"):
        load_lpips(tmp_path / "arch.pth")
    model = load_lpips(_save(tmp_path, _random_lpips_state("alex", "lpips")))
    with pytest.raises(ValueError, match="minimum side"):
        model(_images(0, h=16, w=16), _images(1, h=16, w=16))


def _save(tmp_path, state):
    path = tmp_path / "ok.pth"
    torch.save(state, path)
    return path
