"""The adapters' networks at tiny sizes with random weights, from the packages' real classes: one
definition for tests/test_adapters_*.py and benchmarks/adapters.py.

    model = tiny_anysplat(seed=0, voxelize=False)   # ffgs's AnySplat: 4-layer, 32-wide VGGT aggregator
    net = small_da3(seed=0)                          # DepthAnything3Net: ViT-S DinoV2, narrow heads
    net = tiny_pi3x(seed=0)                          # pi3's Pi3X: 2-layer DINOv2, 4 decoder blocks
    adapter = tiny_adapter("vggt")                   # edge (edge-t), anysplat, vggt, da3 or pi3x at these sizes

The builders seed the global generator (torch.manual_seed) and raise MissingExtraError when the
model's optional package is not installed.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from foresplat.models.adapter import ModelAdapter

TINY_ANYSPLAT: dict[str, Any] = dict(
    img_size=56, patch_size=14, embed_dim=32, intermediate_layer_idx=[0, 1, 2, 3], voxel_size=0.05,
    aggregator=dict(depth=4, num_heads=2, patch_embed="conv"),
    camera_head=dict(trunk_depth=1, num_heads=2),
    depth_head=dict(intermediate_layer_idx=[0, 1, 2, 3], features=16, out_channels=[8, 16, 32, 32]),
    gs_head=dict(intermediate_layer_idx=[0, 1, 2, 3], out_channels=[8, 16, 32, 32]))
"""ffgs AnySplat arguments of a few-layer AnySplat (SH degree 4 as released: ffgs's Gaussian head needs
degree >= 3; voxel fusion on, as released)."""


def _obj(path: str, name: str) -> dict[str, Any]:
    return {"__object__": {"path": f"depth_anything_3.model.{path}", "name": name, "args": "as_params"}}


SMALL_DA3: dict[str, Any] = {
    **_obj("da3", "DepthAnything3Net"),
    "net": {**_obj("dinov2.dinov2", "DinoV2"), "name": "vits", "out_layers": [5, 7, 9, 11], "alt_start": 4,
            "qknorm_start": 4, "rope_start": 4, "cat_token": True},
    "head": {**_obj("dualdpt", "DualDPT"), "dim_in": 768, "output_dim": 2, "features": 32,
             "out_channels": [16, 32, 64, 64]},
    "cam_enc": {**_obj("cam_enc", "CameraEnc"), "dim_out": 384},
    "cam_dec": {**_obj("cam_dec", "CameraDec"), "dim_in": 768},
    "gs_head": {**_obj("gsdpt", "GSDPT"), "dim_in": 768, "output_dim": 38, "features": 32,
                "out_channels": [16, 32, 64, 64]},
    "gs_adapter": {**_obj("gs_adapter", "GaussianAdapter"), "sh_degree": 2, "pred_color": False,
                   "pred_offset_depth": True, "pred_offset_xy": True, "gaussian_scale_min": 1e-5,
                   "gaussian_scale_max": 30.0},
}
"""A DepthAnything3Net config in the package's layout: the giant preset's (DualDPT, camera encoder /
decoder, GSDPT, SH degree 2) at ViT-S with narrow heads."""


def tiny_anysplat(seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """ffgs's AnySplat with TINY_ANYSPLAT's arguments (`overrides` replace some), weights from `seed`, in eval mode."""
    from foresplat.models.adapters.anysplat import ffgs_anysplat

    modeling = ffgs_anysplat()["modeling"]
    torch.manual_seed(seed)
    return modeling.AnySplat(**copy.deepcopy({**TINY_ANYSPLAT, **overrides})).eval()


def small_da3(seed: int = 0) -> torch.nn.Module:
    """DepthAnything3Net of SMALL_DA3, weights from `seed`, in eval mode."""
    from foresplat.models.adapters.da3 import build_net

    torch.manual_seed(seed)
    return build_net({"config": SMALL_DA3}, "SMALL_DA3").eval()


def tiny_adapter(name: str, seed: int = 0) -> ModelAdapter:
    """The adapter `name` over the networks above, weights from `seed`: edge (the edge-t predictor),
    anysplat (voxel fusion), vggt (the same network without fusion), da3 or pi3x (tiny_pi3x_adapter)."""
    if name == "edge":
        from foresplat.models import Predictor, PredictorConfig
        from foresplat.models.adapters.edge import EdgeAdapter

        torch.manual_seed(seed)
        return EdgeAdapter(Predictor(PredictorConfig.preset("edge-t")))
    if name in ("anysplat", "vggt"):
        from foresplat.models.adapters.anysplat import AnySplatAdapter
        from foresplat.models.adapters.vggt import VGGTAdapter

        cls = AnySplatAdapter if name == "anysplat" else VGGTAdapter
        return cls(tiny_anysplat(seed, voxelize=name == "anysplat"))
    if name == "da3":
        from foresplat.models.adapters.da3 import DA3Adapter

        return DA3Adapter(small_da3(seed))
    if name == "pi3x":
        return tiny_pi3x_adapter(seed)
    raise ValueError(f"unknown model {name!r}; expected edge, anysplat, vggt, da3 or pi3x")


TINY_PI3X: dict[str, Any] = {
    "pi3x": dict(embed_dim=32, img_size=56, encoder_depth=2, encoder_heads=2, decoder_depth=4, decoder_heads=2,
                 head_dim=32, head_heads=2, head_depth=1, camera_dim=16, metric_dim=16, metric_heads=2,
                 upsample=[16, 16, 16], last_conv_channels=8, pose_inject_blocks=1, multimodal=True),
    "gs_channels": [8, 16, 32, 32],
    "gs_layers": [0, 1, 1, 1],
    "sh_degree": 3,
}
"""A pi3x config.json (foresplat.models.adapters.pi3x) of a tiny Pi3X: 2-layer, 32-wide DINOv2 encoder,
4 decoder blocks (2 pairs), 1-block heads, the prior branches present (as released); a narrow
Gaussian head (the lowest SH degree ffgs's head takes, 3)."""


def tiny_pi3x(seed: int = 0) -> torch.nn.Module:
    """pi3's Pi3X at TINY_PI3X's sizes (foresplat.models.adapters.pi3x.build_pi3x), weights from `seed`, in eval mode."""
    from foresplat.models.adapters.pi3x import build_pi3x

    torch.manual_seed(seed)
    return build_pi3x(copy.deepcopy(TINY_PI3X["pi3x"])).eval()


def tiny_pi3x_adapter(seed: int = 0) -> ModelAdapter:
    """The pi3x adapter over tiny_pi3x(seed) with TINY_PI3X's Gaussian head (weights from seed + 1)."""
    from foresplat.models.adapters.pi3x import Pi3XAdapter, build_gs_head

    net = tiny_pi3x(seed)
    torch.manual_seed(seed + 1)
    head = build_gs_head(net.dec_embed_dim, TINY_PI3X["sh_degree"], TINY_PI3X["gs_channels"])
    return Pi3XAdapter(net, head, TINY_PI3X["sh_degree"], TINY_PI3X["gs_layers"])
