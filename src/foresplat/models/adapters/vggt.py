"""VGGT (frozen) + a new Gaussian head: the `vggt` adapter, built from ffgs's AnySplat classes (package ffgs).

    adapter = load_adapter("vggt", "weights/vggt")     # VGGT's model.safetensors (+ config.json)
    foresplat train --model vggt --weights weights/vggt --rule metagrad ... --out runs/vggt_gs
    foresplat predict SCENE --model vggt --weights weights/vggt --head runs/vggt_gs/head

VGGT has no Gaussian head. AnySplat is VGGT's aggregator, camera and depth heads plus a DPT-style
Gaussian head over the same tokens; ffgs builds that network from arguments with VGGT's parameter
names. This adapter fills the VGGT part from VGGT's own checkpoint (keys aggregator.*, camera_head.*,
depth_head.*, loaded strictly; point_head.* and track_head.* are not used and skipped) and starts
the Gaussian head from a fixed-seed initialisation (seed 0) until a fine-tuned head is given
(`--head`, written by `foresplat train --model vggt`). encode / run_head / decode are AnySplat's
(foresplat.models.adapters.anysplat): depth + predicted cameras -> points, voxel fusion, channels ->
raw Gaussians, predicted cameras fitted to given ones. config.json, if present, holds ffgs AnySplat
arguments (VGGT's architecture and the Gaussian head / fusion settings); absent: VGGT-1B with
AnySplat's released head and fusion settings.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from foresplat.models.adapter import load_state_strict
from foresplat.models.adapters.anysplat import AnySplatAdapter, build_from_weights

UNUSED_HEADS = ("point_head.", "track_head.")
"""Keys of VGGT's checkpoint that the adapter does not use (skipped, not an error)."""

HEAD_SEED = 0
"""Seed of the new Gaussian head's initialisation (the same head for every load)."""


class VGGTAdapter(AnySplatAdapter):
    """AnySplat's network with VGGT's weights and a new Gaussian head (module docstring)."""

    name = "vggt"


def load(weights: Path) -> VGGTAdapter:
    """weights: a folder with VGGT's model.safetensors (and optionally config.json), or a .safetensors
    file (config.json beside it, if any). Strict on aggregator / camera_head / depth_head."""
    model, state, st, of_config = build_from_weights(weights, "vggt", seed=HEAD_SEED)
    enc = model.encoder
    vggt = nn.ModuleDict({"aggregator": enc.aggregator, "camera_head": enc.camera_head, "depth_head": enc.depth_head})
    used = {k: v for k, v in state.items() if not k.startswith(UNUSED_HEADS)}
    load_state_strict(vggt, used, str(st), "VGGT's aggregator, camera_head and depth_head" + of_config)
    return VGGTAdapter(model)
