"""foresplat.io.checkpoint: safetensors + JSON pairs, their failure modes, and exact optimizer state."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import foresplat
from foresplat.io import (CHECKPOINT_SCHEMA_VERSION, CheckpointError, checkpoint_paths, flatten_state,
                          load_checkpoint, save_checkpoint, unflatten_state)


def _state():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 5, generator=gen)
    return {"w": w, "w_t": w.t(), "b": torch.arange(3, dtype=torch.int64),
            "h": torch.randn(2, dtype=torch.float16, generator=gen), "scalar": torch.tensor(2.5)}


@dataclasses.dataclass
class _Cfg:
    lr: float = 1e-3
    out: Path = Path("runs/x")


def test_paths():
    for given in ("r/ckpt", "r/ckpt.safetensors", "r/ckpt.json"):
        assert checkpoint_paths(given) == (Path("r/ckpt.safetensors"), Path("r/ckpt.json"))
    assert checkpoint_paths("r/ckpt.step100")[1] == Path("r/ckpt.step100.json")


@pytest.mark.parametrize("given", ["ck", "ck.safetensors", "ck.json"])
def test_round_trip(tmp_path, given):
    sd = _state()
    json_path = save_checkpoint(tmp_path / "sub" / given, sd,
                                {"kind": "predictor", "step": 7, "config": _Cfg(), "schema_version": 99})
    assert json_path == tmp_path / "sub" / "ck.json"
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["ck.json", "ck.safetensors"]
    loaded, meta = load_checkpoint(tmp_path / "sub" / "ck", expected_kind="predictor")
    assert loaded.keys() == sd.keys()
    for k, v in sd.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k
    assert meta["schema_version"] == CHECKPOINT_SCHEMA_VERSION  # reserved keys are not overridable
    assert meta["foresplat_version"] == foresplat.__version__ and meta["created"].endswith("+00:00")
    assert meta["step"] == 7 and meta["config"] == {"lr": 1e-3, "out": "runs/x"}
    assert len(meta["safetensors_sha256"]) == 64


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="ck.json"):
        load_checkpoint(tmp_path / "ck")
    save_checkpoint(tmp_path / "ck", _state(), {})
    (tmp_path / "ck.json").unlink()  # crash between the two writes: tensors without JSON
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_checkpoint(tmp_path / "ck")
    save_checkpoint(tmp_path / "ck", _state(), {})
    (tmp_path / "ck.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="ck.safetensors"):
        load_checkpoint(tmp_path / "ck")


def test_schema_kind_and_json_errors(tmp_path):
    j = save_checkpoint(tmp_path / "ck", _state(), {"kind": "predictor"})
    with pytest.raises(CheckpointError, match="has kind 'predictor', expected 'training'"):
        load_checkpoint(j, expected_kind="training")
    meta = json.loads(j.read_text())
    meta["schema_version"] = 5
    j.write_text(json.dumps(meta))
    want = rf"ck.json has schema 5, this foresplat reads {CHECKPOINT_SCHEMA_VERSION}"
    with pytest.raises(CheckpointError, match=want):
        load_checkpoint(j)
    j.write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_checkpoint(j)


def test_inconsistent_pair_detected(tmp_path):
    save_checkpoint(tmp_path / "old", {"w": torch.zeros(3)}, {})
    save_checkpoint(tmp_path / "ck", {"w": torch.ones(3)}, {})
    # An overwrite interrupted after the tensors were replaced but before the JSON was.
    (tmp_path / "ck.safetensors").write_bytes((tmp_path / "old.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match ck.json"):
        load_checkpoint(tmp_path / "ck")
    loaded, _ = load_checkpoint(tmp_path / "ck", verify=False)
    assert torch.equal(loaded["w"], torch.zeros(3))


def test_bad_inputs_write_nothing(tmp_path):
    with pytest.raises(TypeError, match=r"state_dict\['n'\]"):
        save_checkpoint(tmp_path / "ck", {"n": 3}, {})
    with pytest.raises(ValueError, match="not JSON-serializable"):
        save_checkpoint(tmp_path / "ck", _state(), {"loss": float("nan")})
    with pytest.raises(TypeError, match="not JSON-serializable"):
        save_checkpoint(tmp_path / "ck", _state(), {"obj": object()})
    assert list(tmp_path.iterdir()) == []


def test_flatten_unflatten_exact_structure():
    t = torch.randn(2)
    nested = {"state": {0: {"step": torch.tensor(3.0), "m": t}, 5: {}},
              "groups": [{"betas": (0.9, 0.999), "eps": 1e-15, "max": float("inf"), "nan": float("nan"),
                          "flag": True, "none": None, "params": [0, 5], "name": "xyz"}],
              "odd": {"__tensor__": "not a tensor", (1, "a"): [t]},
              "a.b": t.clone(), "a": {"b": t * 2}}
    tensors, skel = flatten_state(nested, prefix="optim")
    assert "optim.state.0.m" in tensors and all(k.startswith("optim.") for k in tensors)
    skel = json.loads(json.dumps(skel, allow_nan=False))  # strict JSON
    back = unflatten_state(tensors, skel)
    assert back["state"][0]["m"] is t and list(back["state"]) == [0, 5]
    g = back["groups"][0]
    assert g["betas"] == (0.9, 0.999) and isinstance(g["betas"], tuple)
    assert g["eps"] == 1e-15 and g["max"] == float("inf") and g["nan"] != g["nan"]
    assert g["flag"] is True and g["none"] is None and g["params"] == [0, 5]
    assert back["odd"]["__tensor__"] == "not a tensor" and back["odd"][(1, "a")][0] is t
    assert torch.equal(back["a.b"], t) and torch.equal(back["a"]["b"], t * 2)
    with pytest.raises(TypeError, match=r"'x.y'"):
        flatten_state({"y": object()}, prefix="x")
    with pytest.raises(KeyError, match="optim.state.0.step"):
        unflatten_state({}, skel)


def test_adamw_state_reload_gives_identical_steps(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def step(m, o):
        o.zero_grad()
        torch.nn.functional.mse_loss(m(x), y).backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    opt_tensors, opt_skel = flatten_state(opt.state_dict(), prefix="optim")
    save_checkpoint(tmp_path / "train", {**model.state_dict(), **opt_tensors},
                    {"kind": "training", "optimizer": opt_skel})

    tensors, meta = load_checkpoint(tmp_path / "train.json", expected_kind="training")
    model2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model2.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5)  # hyper-parameters come from the state
    opt2.load_state_dict(unflatten_state(tensors, meta["optimizer"]))
    assert opt2.param_groups[0]["betas"] == (0.8, 0.99) and opt2.param_groups[0]["lr"] == 1e-2
    for _ in range(3):
        step(model, opt)
        step(model2, opt2)
        for p, q in zip(model.parameters(), model2.parameters()):
            assert torch.equal(p, q)
