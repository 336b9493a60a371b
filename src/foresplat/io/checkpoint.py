"""Checkpoints: a `<stem>.safetensors` (tensors) + `<stem>.json` (metadata) pair, written atomically.

`path` may be given as `run/ckpt`, `run/ckpt.safetensors` or `run/ckpt.json`: all name the pair
`run/ckpt.safetensors` + `run/ckpt.json` (any other suffix is part of the stem: `ckpt.step100`).
The tensors are written first, then the JSON, which marks the pair complete: it records the
sha256 of the safetensors file, so a pair left inconsistent by an interrupted overwrite is
detected on load. The JSON always holds `schema_version`, `created` (UTC ISO 8601),
`foresplat_version`, `safetensors_sha256`, whatever the caller passed (`kind`, `config`,
`step`, ...) and `meta_sha256`, the sha256 of all the rest (`meta_digest`): an edited config is
refused on load. Checkpoints written before `meta_sha256` existed are still read (their tensors
remain covered by `safetensors_sha256`; predictor configs are checked against the weights' shapes
before the model is built, foresplat.models.predictor.check_config_fits_weights).

Optimizer / training state (nested dicts, lists, tuples of tensors and Python scalars, e.g. a
torch optimizer `state_dict()`) goes through `flatten_state` -> (flat tensors, JSON skeleton) and
back through `unflatten_state`, exactly (int dict keys, tuples, inf/nan floats preserved).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from foresplat.io.atomic import atomic_write, atomic_write_json

__all__ = ["CHECKPOINT_SCHEMA_VERSION", "CheckpointError", "checkpoint_paths", "save_checkpoint",
           "load_checkpoint", "meta_digest", "flatten_state", "unflatten_state"]

CHECKPOINT_SCHEMA_VERSION = 1
MAX_JSON_BYTES = 256 << 20
"""Largest checkpoint JSON read (optimizer skeletons are a few MB; more is not a checkpoint)."""
_RESERVED = ("schema_version", "created", "foresplat_version", "safetensors_sha256", "meta_sha256")
_TAGS = ("__tensor__", "__tuple__", "__dict__", "__float__")


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be used: schema/kind mismatch, inconsistent pair, bad JSON."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(`<stem>.safetensors`, `<stem>.json`) for `path` given with or without either suffix."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    if p.name in ("", ".", ".."):
        raise ValueError(f"checkpoint path {str(path)!r} has no file name")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def save_checkpoint(path: str | os.PathLike, state_dict: dict[str, torch.Tensor],
                    meta: dict[str, Any] | None = None) -> Path:
    """Writes `state_dict` (str -> Tensor, any device/dtype) and `meta` (JSON-able; dataclasses and
    Paths are converted) as a checkpoint pair; returns the JSON path.

    Reserved meta keys (schema_version, created, foresplat_version, safetensors_sha256) are set
    here and override any given. Raises TypeError/ValueError naming the bad key before writing.
    """
    st_path, json_path = checkpoint_paths(path)
    tensors: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"save_checkpoint({st_path}): state_dict keys must be str, got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"save_checkpoint({st_path}): state_dict[{key!r}] is a "
                            f"{type(value).__name__}, expected a torch.Tensor (put scalars in meta)")
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen_storages:  # safetensors refuses tensors sharing memory
            t = t.clone()
        seen_storages.add(ptr)
        tensors[key] = t

    import foresplat  # late import: foresplat/__init__ may import this package

    record = {k: v for k, v in (meta or {}).items() if k not in _RESERVED}
    record = {"schema_version": CHECKPOINT_SCHEMA_VERSION,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "foresplat_version": foresplat.__version__, **record}
    try:  # fail before writing anything
        record = json.loads(json.dumps(record, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise type(e)(f"save_checkpoint({json_path}): meta is not JSON-serializable: {e}") from e

    with atomic_write(st_path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp))
        record["safetensors_sha256"] = _sha256(tmp)
    record["meta_sha256"] = meta_digest(record)
    return atomic_write_json(json_path, record)


def meta_digest(meta: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no blanks) of `meta` without its `meta_sha256`:
    covers the config, the step and the tensors' sha256, so an edited JSON is detected."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def load_checkpoint(path: str | os.PathLike, expected_kind: str | None = None,
                    device: torch.device | str = "cpu", verify: bool = True
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads a checkpoint pair -> (state_dict on `device`, meta dict).

    Raises FileNotFoundError if either file is missing, CheckpointError (a ValueError) for
    unreadable JSON, a schema_version other than CHECKPOINT_SCHEMA_VERSION, a `kind` other
    than `expected_kind`, or (with `verify`) a safetensors file whose sha256 differs from the
    one recorded in the JSON.
    """
    st_path, json_path = checkpoint_paths(path)
    for p in (json_path, st_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint {st_path.with_suffix('')}: missing {p}"
                                    + (" (an incomplete save, or not a checkpoint)" if p == json_path else ""))
    if json_path.stat().st_size > MAX_JSON_BYTES:
        raise CheckpointError(f"checkpoint {json_path}: {json_path.stat().st_size} bytes, more than the "
                              f"{MAX_JSON_BYTES >> 20} MB a checkpoint's metadata may have (not a checkpoint?)")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {json_path}: invalid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {json_path}: expected a JSON object, got {type(meta).__name__}")
    schema = meta.get("schema_version")
    if schema != CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(f"checkpoint {json_path} has schema {schema}, "
                              f"this foresplat reads {CHECKPOINT_SCHEMA_VERSION}")
    if expected_kind is not None and meta.get("kind") != expected_kind:
        raise CheckpointError(f"checkpoint {json_path} has kind {meta.get('kind')!r}, "
                              f"expected {expected_kind!r}")
    if verify and "meta_sha256" in meta:
        try:
            digest = meta_digest(meta)
        except ValueError as e:  # NaN/inf smuggled into the JSON
            raise CheckpointError(f"checkpoint {json_path}: not canonical JSON ({e})") from e
        if digest != meta["meta_sha256"]:
            raise CheckpointError(f"checkpoint {json_path}: its content does not match its recorded meta_sha256 "
                                  "(the JSON was edited or is corrupt); use another checkpoint")
    data = st_path.read_bytes()
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.get("safetensors_sha256"):
            raise CheckpointError(
                f"checkpoint {st_path} does not match {json_path.name} (sha256 {digest[:12]}... vs "
                f"recorded {str(meta.get('safetensors_sha256'))[:12]}...): the pair is inconsistent, "
                "probably an interrupted save; use another checkpoint")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own SafetensorError type
        raise CheckpointError(f"checkpoint {st_path}: unreadable safetensors file ({e})") from e
    if torch.device(device).type != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, meta


# ---- nested state <-> flat tensors + JSON skeleton ---------------------------------------------

def flatten_state(nested: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Splits a nested structure into (flat {name: Tensor}, JSON-able skeleton).

    Accepts dicts (any str/int/float/bool/None/tuple keys), lists, tuples, tensors, str, int,
    float (inf/nan too), bool and None. Tensors are named by their path, e.g.
    `optim.state.0.exp_avg` with prefix "optim"; the skeleton refers to them by name, so several
    flattened states (with different prefixes) can share one checkpoint. Raises TypeError naming
    the path of an unsupported value.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(obj: Any, where: str) -> Any:
        if isinstance(obj, torch.Tensor):
            name = where or "tensor"
            if name in tensors:  # paths can collide only through keys containing "."
                i = 1
                while f"{name}#{i}" in tensors:
                    i += 1
                name = f"{name}#{i}"
            tensors[name] = obj
            return {"__tensor__": name}
        if obj is None or isinstance(obj, (str, bool, int)):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if isinstance(obj, list):
            return [enc(v, f"{where}.{i}" if where else str(i)) for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"__tuple__": [enc(v, f"{where}.{i}" if where else str(i)) for i, v in enumerate(obj)]}
        if isinstance(obj, dict):
            items = [(k, enc(v, f"{where}.{k}" if where else str(k))) for k, v in obj.items()]
            if all(isinstance(k, str) and k not in _TAGS for k, _ in items):
                return dict(items)
            return {"__dict__": [[enc(k, f"{where}.<key>"), v] for k, v in items]}
        raise TypeError(f"flatten_state: unsupported value of type {type(obj).__name__} at "
                        f"{where or '<root>'!r}")

    return tensors, enc(nested, prefix)


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of `flatten_state`: rebuilds the nested structure from its skeleton, taking tensors
    (shared, not copied) from `tensors`. Raises KeyError naming a tensor the skeleton needs."""

    def dec(obj: Any) -> Any:
        if isinstance(obj, list):
            return [dec(v) for v in obj]
        if isinstance(obj, dict):
            if len(obj) == 1:
                (tag, value), = obj.items()
                if tag == "__tensor__":
                    if value not in tensors:
                        raise KeyError(f"unflatten_state: tensor {value!r} is missing from the state dict")
                    return tensors[value]
                if tag == "__tuple__":
                    return tuple(dec(v) for v in value)
                if tag == "__float__":
                    return float(value)
                if tag == "__dict__":
                    return {dec(k): dec(v) for k, v in value}
            return {k: dec(v) for k, v in obj.items()}
        return obj

    return dec(skeleton)

