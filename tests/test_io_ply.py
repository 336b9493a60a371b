"""foresplat.io.ply: bit-exact round trips and compatibility with the original 3DGS layout."""

from __future__ import annotations

import numpy as np
import plyfile
import pytest
import torch

from foresplat.gaussians import Gaussians
from foresplat.io import ply_property_names, read_ply, write_ply


def _random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    return Gaussians(r(n, 3) * 5, r(n, 4) + torch.tensor([3.0, 0, 0, 0]), r(n, 3) - 3, r(n), r(n, k, 3))


def _assert_same(a: Gaussians, b: Gaussians):
    for name, x in a.items():
        y = getattr(b, name)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert torch.equal(x, y), name


def _write_3dgs_like(path, g: Gaussians, *, order=None, extra=(), text=False, byte_order="<",
                     drop=(), prop_dtype="f4"):
    """Writes `g` with plyfile directly, in the 3DGS layout computed here independently."""
    n, k = g.num, g.sh.shape[1]
    values = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2],
              "nx": torch.zeros(n), "ny": torch.zeros(n), "nz": torch.zeros(n),
              "opacity": g.opacity_logits}
    for c in range(3):
        values[f"f_dc_{c}"] = g.sh[:, 0, c]
        for j in range(1, k):
            values[f"f_rest_{c * (k - 1) + j - 1}"] = g.sh[:, j, c]
    for i in range(3):
        values[f"scale_{i}"] = g.log_scales[:, i]
    for i in range(4):
        values[f"rot_{i}"] = g.quats[:, i]
    for name in extra:
        values[name] = torch.full((n,), 7.0)
    names = [m for m in (order or list(values)) if m not in drop]
    arr = np.empty(n, dtype=[(m, prop_dtype) for m in names])
    for m in names:
        arr[m] = values[m].numpy()
    plyfile.PlyData([plyfile.PlyElement.describe(arr, "vertex")], text=text, byte_order=byte_order).write(str(path))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 257])
def test_round_trip_bit_exact(tmp_path, degree, n):
    g = _random_gaussians(n, degree)
    path = write_ply(tmp_path / "g.ply", g)
    h = read_ply(path)
    assert h.sh_degree == degree and h.num == n
    _assert_same(g, h)


def test_written_file_is_standard_3dgs(tmp_path):
    g = _random_gaussians(5, 3)
    write_ply(tmp_path / "g.ply", g)
    ply = plyfile.PlyData.read(str(tmp_path / "g.ply"))
    assert not ply.text and ply.byte_order == "<"
    assert [el.name for el in ply.elements] == ["vertex"]
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expected == ply_property_names(3)
    assert all(v.data.dtype[m] == np.dtype("<f4") for m in names)
    # Channel-major f_rest (3DGS stores features_rest as [N, 3, K-1] flattened).
    assert np.array_equal(v["f_rest_0"], g.sh[:, 1, 0].numpy())
    assert np.array_equal(v["f_rest_1"], g.sh[:, 2, 0].numpy())
    assert np.array_equal(v["f_rest_15"], g.sh[:, 1, 1].numpy())
    assert np.array_equal(v["f_rest_44"], g.sh[:, 15, 2].numpy())
    assert np.array_equal(v["opacity"], g.opacity_logits.numpy())
    assert np.array_equal(v["scale_2"], g.log_scales[:, 2].numpy())
    assert np.array_equal(v["rot_0"], g.quats[:, 0].numpy())
    assert not np.any(v["nx"]) and not np.any(v["nz"])


@pytest.mark.parametrize("degree", [0, 2])
@pytest.mark.parametrize("variant", ["shuffled_extra", "ascii", "big_endian_no_normals", "double"])
def test_reads_files_from_other_writers(tmp_path, variant, degree):
    g = _random_gaussians(33, degree, seed=1)
    path = tmp_path / "other.ply"
    names = ply_property_names(degree)
    shuffled = [names[i] for i in np.random.default_rng(0).permutation(len(names))]
    if variant == "shuffled_extra":
        _write_3dgs_like(path, g, order=shuffled + ["red", "filter_3D"], extra=("red", "filter_3D"))
    elif variant == "ascii":
        _write_3dgs_like(path, g, order=shuffled, text=True)
    elif variant == "big_endian_no_normals":
        _write_3dgs_like(path, g, byte_order=">", drop=("nx", "ny", "nz"))
    else:
        _write_3dgs_like(path, g, prop_dtype="f8")
    _assert_same(g, read_ply(path))


def test_dtype_and_device(tmp_path):
    g = _random_gaussians(10, 1)
    h = read_ply(write_ply(tmp_path / "g.ply", g), dtype=torch.float64, device="cpu")
    assert h.dtype == torch.float64 and h.device.type == "cpu"
    _assert_same(g, h.to(torch.float32))


def test_write_converts_and_validates(tmp_path):
    g = _random_gaussians(4, 0).to(torch.float64).requires_grad_()
    h = read_ply(write_ply(tmp_path / "g.ply", g))
    _assert_same(g.detach().to(torch.float32), h)
    bad = _random_gaussians(4, 0)
    bad.log_scales[2, 1] = float("nan")
    with pytest.raises(ValueError, match="log_scales"):
        write_ply(tmp_path / "bad.ply", bad)
    with pytest.raises(ValueError, match="unbatched"):
        write_ply(tmp_path / "bad.ply", Gaussians.stack([g.detach(), g.detach()]))
    assert not (tmp_path / "bad.ply").exists()


def test_errors_name_file_and_property(tmp_path):
    g = _random_gaussians(6, 1)
    p = tmp_path / "missing.ply"
    _write_3dgs_like(p, g, drop=("scale_1",))
    with pytest.raises(ValueError, match=r"missing\.ply.*scale_1"):
        read_ply(p)

    p = tmp_path / "rest.ply"
    _write_3dgs_like(p, g, drop=("f_rest_8",))
    with pytest.raises(ValueError, match=r"rest\.ply.*f_rest.*got 8"):
        read_ply(p)

    p = tmp_path / "nan.ply"
    g2 = _random_gaussians(6, 1)
    g2.sh[3, 2, 1] = float("inf")  # f_rest_{1*3 + 1} = f_rest_4
    _write_3dgs_like(p, g2)
    with pytest.raises(ValueError, match=r"nan\.ply.*f_rest_4"):
        read_ply(p)

    p = tmp_path / "zeroquat.ply"
    g3 = _random_gaussians(6, 1)
    g3.quats[1] = 0
    _write_3dgs_like(p, g3)
    with pytest.raises(ValueError, match=r"zeroquat\.ply.*quaternion"):
        read_ply(p)

    p = write_ply(tmp_path / "trunc.ply", g)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"trunc\.ply"):
        read_ply(p)

    p = tmp_path / "junk.ply"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match=r"junk\.ply.*not a readable"):
        read_ply(p)

    p = tmp_path / "face.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(np.zeros(2, dtype=[("a", "f4")]), "face")]).write(str(p))
    with pytest.raises(ValueError, match=r"face\.ply.*'vertex'"):
        read_ply(p)

    with pytest.raises(FileNotFoundError, match="nope.ply"):
        read_ply(tmp_path / "nope.ply")
