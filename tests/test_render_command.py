"""`foresplat render`: .ply orbit renders, synthetic previews, option errors."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from foresplat.commands.render import RenderCommand, main, orbit_cameras
from foresplat.gaussians import Gaussians


def _blob_ply(path):
    from foresplat.io.ply import write_ply

    g = torch.Generator().manual_seed(0)
    n = 200
    means = torch.randn(n, 3, generator=g) * 0.5
    gauss = Gaussians.from_activated(means, torch.randn(n, 4, generator=g), torch.full((n, 3), 0.08),
                                     torch.full((n,), 0.8), torch.rand(n, 3, generator=g), sh_degree=1)
    write_ply(path, gauss)
    return gauss


def test_ply_orbit(tmp_path):
    _blob_ply(tmp_path / "blob.ply")
    out = tmp_path / "renders"
    rc = main(["--ply", str(tmp_path / "blob.ply"), "--out", str(out), "--views", "3", "--width", "40",
               "--height", "30", "--depth", "--backend", "cpu"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["depth_00.png", "depth_01.png", "depth_02.png", "view_00.png", "view_01.png", "view_02.png"]
    img = np.asarray(Image.open(out / "view_01.png"))
    assert img.shape == (30, 40, 3)
    assert img[12:18, 17:23].mean() > 40 and img[0, 0].max() == 0  # the blob is centred, corners empty


def test_orbit_cameras_look_at_centre():
    means = torch.randn(500, 3) + torch.tensor([5.0, -2.0, 1.0])
    cams = orbit_cameras(means, 5, 64, 48, 50.0, 20.0, "z")
    pix, depth = cams.project(means.median(dim=0).values[None])
    assert torch.allclose(pix, torch.tensor([32.0, 24.0]).expand_as(pix), atol=1e-3)
    assert bool((depth > 0).all())


def test_synthetic_preview(tmp_path):
    rc = main(["--synthetic-seed", "2", "--out", str(tmp_path), "--width", "24", "--height", "20"])
    assert rc == 0
    views = sorted(tmp_path.glob("view_*.png"))
    targets = sorted(tmp_path.glob("target_*.png"))
    assert len(views) == len(targets) >= 1
    a = np.asarray(Image.open(views[0])).astype(float)
    b = np.asarray(Image.open(targets[0])).astype(float)
    assert a.shape == b.shape == (20, 24, 3)
    assert np.abs(a - b).mean() < 60  # a rough preview of the same view, not noise


def test_option_errors(tmp_path, capsys):
    from foresplat.cli import main as cli  # errors go through the CLI's one error path (foresplat.errors)

    assert cli(["render", "--out", str(tmp_path)]) == 2
    assert "foresplat render: error: " in (err := capsys.readouterr().err) and "got neither" in err
    assert cli(["render", "--ply", str(tmp_path / "missing.ply"), "--out", str(tmp_path)]) == 2
    assert cli(["render", "--synthetic-seed", "1", "--out", str(tmp_path), "--width", "0"]) == 2
    assert RenderCommand(out=tmp_path, synthetic_seed=1).validate().views == 8
