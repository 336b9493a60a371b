"""One command-line vocabulary: every subcommand's --help uses --ckpt / --out / --split (one default) and
SCENE, old spellings still work with a deprecation line, and every .ply writer has --sh-degree (a degree-3
file passes the original 3DGS loader's property-count check, read the way that loader reads it)."""

from __future__ import annotations

import re

import numpy as np
import plyfile
import pytest
import torch

from foresplat.cli import COMMANDS, main
from foresplat.commands._vocab import RENAMED, SPLIT_DEFAULT, modernize
from foresplat.gaussians import Gaussians

OLD_SPELLINGS = {"--checkpoint", "--checkpoints", "--init-checkpoint", "--checkpoint-path", "--ckpt-path",
                 "--out-dir", "--outdir", "--output", "--output-dir", "--split-rule", "--sheet", "--synthetic-seed"}
NOT_A_CHECKPOINT_INPUT = {"--ckpt-interval", "--keep-checkpoints"}  # how often / how many checkpoints train writes
TAKES_CKPT = {"predict", "refine", "eval", "train"}
WRITES = {"predict", "refine", "eval", "train", "render", "demo", "data"}
TAKES_SPLIT = {"predict", "refine", "eval", "render"}
WRITES_PLY = {"predict", "refine", "eval", "demo"}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9.-]*")


def _help(command: str, capsys) -> str:
    argv = [command, "inspect", "--help"] if command == "data" else [command, "--help"]
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    assert rc in (0, None), f"foresplat {' '.join(argv)} exited {rc}: {out.err}"
    return out.out + out.err


@pytest.fixture(scope="module")
def helps():
    """{command: the set of options its --help lists} (and the help text under key (command, 'text'))."""
    return {}


def _options(command: str, capsys, cache: dict) -> tuple[set[str], str]:
    if command not in cache:
        text = _help(command, capsys)
        cache[command] = ({o.rstrip(".") for o in OPTION.findall(text)}, text)
    return cache[command]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_uses_one_vocabulary(command, capsys, helps):
    options, text = _options(command, capsys, helps)
    assert not options & OLD_SPELLINGS, f"{command}: old spellings in --help: {options & OLD_SPELLINGS}"
    for full in options:
        opt = "--" + full[2:].split(".")[-1]  # a nested config's option (--train.ckpt) follows the same names
        if "ckpt" in opt or "checkpoint" in opt:
            assert opt == "--ckpt" or opt in NOT_A_CHECKPOINT_INPUT, f"{command}: checkpoint option {opt} (use --ckpt)"
        if opt.startswith("--output") or opt in ("--out-dir", "--outdir", "--out-path", "--out-file", "--out-folder"):
            raise AssertionError(f"{command}: output option {full} (use --out)")
        if "split" in opt:
            assert opt in ("--split", "--split-seed"), f"{command}: split option {opt} (use --split)"
    if command in TAKES_CKPT:
        assert "--ckpt" in options, f"{command} takes a checkpoint but has no --ckpt"
    if command in WRITES:
        assert "--out" in options, f"{command} writes files but has no --out"
    if command in TAKES_SPLIT:
        assert "--split" in options, f"{command} splits views but has no --split"
        after = text[text.index("--split "):]
        default = re.search(r"\(default:\s*([a-z]+)\)", after)
        assert default and default.group(1) == SPLIT_DEFAULT, f"{command}: --split default is not {SPLIT_DEFAULT}"
    if command in WRITES_PLY:
        assert "--sh-degree" in options, f"{command} writes a .ply but has no --sh-degree"
    if command in ("predict", "refine"):
        assert re.search(r"usage: foresplat %s .*SCENE" % command, text.replace("\n", " ")), text[:300]
    if command in ("render", "view"):
        assert "--scene" in options


def test_split_defaults_agree():
    from foresplat.commands.predict import PredictCommand
    from foresplat.commands.refine import RefineCommand
    from foresplat.commands.render import RenderCommand
    from foresplat.evaluate.protocol import EvalConfig

    defaults = {c.__name__: c.__dataclass_fields__["split"].default
                for c in (PredictCommand, RefineCommand, RenderCommand, EvalConfig)}
    assert set(defaults.values()) == {SPLIT_DEFAULT}, defaults


def test_old_spellings_are_rewritten_with_a_deprecation_line(capsys):
    assert modernize("eval", ["--checkpoints", "a=x", "b", "--checkpoints=c"]) == ["--ckpt", "a=x", "b", "--ckpt=c"]
    err = capsys.readouterr().err
    assert err.count("deprecated") == 1 and "--checkpoints" in err and "use --ckpt" in err
    assert modernize("render", ["--synthetic-seed", "3", "--out", "o"]) == ["--scene", "synthetic:3", "--out", "o"]
    assert modernize("render", ["--synthetic-seed=4"]) == ["--scene", "synthetic:4"]
    assert modernize("train", ["--x", "--", "--out-dir", "d"]) == ["--x", "--", "--out-dir", "d"]  # after --: untouched
    assert modernize("predict", ["--ckpt", "m", "--out", "g.ply"]) == ["--ckpt", "m", "--out", "g.ply"]
    capsys.readouterr()
    for command, renames in RENAMED.items():
        assert command in COMMANDS and all(new.split()[0] != old for old, new in renames.items())


def test_old_spellings_still_parse(capsys):
    import tyro

    from foresplat.commands.eval import EvalCommand
    from foresplat.commands.train import parse

    cfg = parse(["--preset", "tiny", "--out-dir", "runs/x", "--init-checkpoint", "runs/base/model"])
    assert (cfg.out_dir, cfg.init_checkpoint) == ("runs/x", "runs/base/model")
    assert parse(["--preset", "tiny", "--out", "runs/y", "--ckpt", "m"]).out_dir == "runs/y"
    cmd = tyro.cli(EvalCommand, args=modernize("eval", ["--checkpoints", "v=runs/v/model"]))
    assert cmd.ckpt == ("v=runs/v/model",)
    assert "--init-checkpoint is deprecated" in capsys.readouterr().err


# ---- --sh-degree ----------------------------------------------------------------------------------
def _original_3dgs_f_rest(path, max_sh_degree: int = 3) -> np.ndarray:
    """What the original 3DGS GaussianModel.load_ply does with the f_rest_* properties: sorted by their
    index, count asserted against the degree, read column by column, reshaped [N, 3, K-1]."""
    vertex = plyfile.PlyData.read(str(path)).elements[0]
    names = sorted((p.name for p in vertex.properties if p.name.startswith("f_rest_")),
                   key=lambda s: int(s.split("_")[-1]))
    assert len(names) == 3 * (max_sh_degree + 1) ** 2 - 3
    extra = np.zeros((vertex.count, len(names)))
    for j, name in enumerate(names):
        extra[:, j] = np.asarray(vertex[name])
    return extra.reshape(vertex.count, 3, (max_sh_degree + 1) ** 2 - 1)


def _gaussians(n: int = 40, degree: int = 1) -> Gaussians:
    gen = torch.Generator().manual_seed(1)
    g = Gaussians.from_activated(torch.randn(n, 3, generator=gen), torch.randn(n, 4, generator=gen),
                                 torch.rand(n, 3, generator=gen) * 0.1 + 0.01, torch.rand(n, generator=gen) * 0.9 + 0.05,
                                 torch.rand(n, 3, generator=gen), sh_degree=degree)
    g.sh[:, 1:] = torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=gen) * 0.2
    return g


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_sh_degree_3_ply_passes_the_original_loader_check(tmp_path, degree):
    from foresplat.io import read_ply, write_ply

    g = _gaussians(degree=degree)
    write_ply(tmp_path / "own.ply", g)
    with pytest.raises(AssertionError):  # a lower degree is what the original loader rejected
        _original_3dgs_f_rest(tmp_path / "own.ply")
    write_ply(tmp_path / "g.ply", g, sh_degree=3)
    rest = _original_3dgs_f_rest(tmp_path / "g.ply")  # [N, 3, 15]
    k = (degree + 1) ** 2
    expect = torch.zeros(g.num, 3, 15)
    expect[:, :, : k - 1] = g.sh[:, 1:, :].transpose(1, 2)
    np.testing.assert_array_equal(rest, expect.numpy())
    back = read_ply(tmp_path / "g.ply")
    assert back.sh_degree == 3 and torch.equal(back.sh[:, :k], g.sh) and not back.sh[:, k:].any()


def test_sh_degree_padding_renders_the_same_and_refuses_lowering(tmp_path):
    from foresplat.cameras import Cameras, look_at
    from foresplat.io import pad_sh_degree, write_ply
    from foresplat.render import render

    g = _gaussians(degree=1)
    cam = Cameras(look_at(torch.tensor([[0.5, -4.0, 1.0]]), torch.zeros(1, 3), torch.tensor([0.0, 0.0, 1.0])),
                  torch.tensor([[[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]]), 32, 24)
    a = render(g, cam, backend="reference").colors
    b = render(pad_sh_degree(g, 3), cam, backend="reference").colors
    assert torch.allclose(a, b, atol=1e-6) and a.abs().sum() > 0
    with pytest.raises(ValueError, match="lowering"):
        write_ply(tmp_path / "x.ply", _gaussians(degree=2), sh_degree=1)


def test_refine_writes_sh_degree_3_and_held_out_renders(tmp_path):
    out = tmp_path / "r.ply"
    assert main(["refine", "synthetic:2", "--init", "random", "--num-random", "200", "--steps", "2",
                 "--width", "24", "--height", "24", "--num-context", "4", "--num-target", "2", "--eval-steps", "0",
                 "--sh-degree", "3", "--no-progress", "--out", str(out)]) == 0
    assert _original_3dgs_f_rest(out).shape == (200, 3, 15)
    import json

    report = json.loads(out.with_suffix(".json").read_text())
    renders = sorted((tmp_path / "r_renders").glob("*.png"))
    idx = report["target_indices"]
    assert [p.name for p in renders] == sorted([f"gt_{i:03d}.png" for i in idx] + [f"view_{i:03d}.png" for i in idx])
    assert report["renders"]["psnr"] == pytest.approx(report["eval"][-1]["psnr"], abs=0.05)
    # render --scene: the same held-out views (from the .ply's JSON), the same scores
    assert main(["render", "--ply", str(out), "--scene", "synthetic:2", "--views", "target",
                 "--out", str(tmp_path / "t")]) == 0
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert [v["index"] for v in m["views"]] == idx and m["psnr"] == pytest.approx(report["eval"][-1]["psnr"], abs=0.05)
    assert main(["render", "--ply", str(out), "--scene", "synthetic:2", "--out", str(tmp_path / "a")]) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert len(m["views"]) == 16 and (m["width"], m["height"]) == (24, 24)
    assert main(["render", "--ply", str(out), "--scene", "synthetic:2", "--views", "3", "--out", str(tmp_path / "b")]) == 2


def test_eval_takes_the_same_scene_spec(tmp_path, capsys):
    """`eval --scenes` reads synthetic:SEED like every other command (held-out seeds only)."""
    args = ["eval", "--synthetic-size", "24", "--steps", "0", "2", "--budgets", "30", "--num-context", "3",
            "--num-target", "1", "--baselines", "random", "--random-count", "50", "--no-progress", "--sh-degree", "3"]
    assert main(args + ["--scenes", "synthetic:1000003", "--out", str(tmp_path / "e")]) == 0
    plys = list((tmp_path / "e").rglob("*.ply"))
    assert len(plys) == 1 and "1000003" in str(plys[0]) and _original_3dgs_f_rest(plys[0]).shape == (50, 3, 15)
    capsys.readouterr()
    assert main(args + ["--scenes", "synthetic:3", "--out", str(tmp_path / "f")]) == 2
    assert "held-out synthetic seeds start at" in capsys.readouterr().err


def test_refine_ckpt_option_and_the_old_init_spelling(tmp_path, capsys):
    base = ["refine", "synthetic:2", "--steps", "1", "--no-progress", "--out", str(tmp_path / "r.ply")]
    assert main(base + ["--ckpt", str(tmp_path / "m"), "--init", "random"]) == 2
    assert "give one initialisation" in capsys.readouterr().err
    assert main(base + ["--init", f"ckpt:{tmp_path / 'missing'}"]) == 2
    err = capsys.readouterr().err
    assert "--init ckpt:PATH is deprecated" in err and "use --ckpt PATH" in err and "missing" in err
    assert main(base + ["--view-capture", str(tmp_path / "f")]) == 2
    assert "needs --view" in capsys.readouterr().err
    assert not (tmp_path / "r.ply").exists()
