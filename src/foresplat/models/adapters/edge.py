"""`EdgeAdapter`: a foresplat Predictor (edge backbone + GaussianHead) behind the adapter interface.

encode = the backbone (frozen, no_grad), head = the predictor's GaussianHead, run_head = its conv
net (GaussianHead.raw), decode = its geometry (GaussianHead.decode). Outputs equal Predictor.forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from foresplat.gaussians import Gaussians
from foresplat.models.adapter import ModelAdapter
from foresplat.models.backbone import BackboneOutput
from foresplat.models.predictor import Predictor


@dataclass
class EdgeFeatures:
    """The backbone's output at h x w and the (posed) views it came from."""

    backbone: BackboneOutput
    images: torch.Tensor  # [B, V, H, W, 3]
    viewmats: torch.Tensor  # [B, V, 4, 4]
    Ks: torch.Tensor  # [B, V, 3, 3]
    near: torch.Tensor  # [B]
    far: torch.Tensor  # [B]


class EdgeAdapter(ModelAdapter):
    """A Predictor as encode / head / decode (module docstring); its backbone is frozen."""

    name = "edge"
    needs_cameras = True

    def __init__(self, predictor: Predictor):
        super().__init__()
        self.predictor = predictor
        self.head = predictor.head
        self.freeze_backbone()

    @property
    def divisor(self) -> int:
        return self.predictor.divisor

    def encode(self, images, viewmats=None, Ks=None, near=None, far=None) -> EdgeFeatures:
        """images [B,V,H,W,3], viewmats [B,V,4,4], Ks [B,V,3,3], near/far [B] -> EdgeFeatures."""
        if near is None:
            raise ValueError("near/far: the edge models need the scene's depth range")
        with torch.no_grad():
            feats = self.predictor.backbone(images, viewmats, Ks, near, far)
        return EdgeFeatures(feats, images, viewmats, Ks, near, far)

    def run_head(self, features: EdgeFeatures) -> torch.Tensor:
        """-> raw head channels [B, V, h*w, C] (GaussianHead.raw)."""
        f = features
        return self.head.raw(f.backbone, f.images, f.near, f.far)

    def decode(self, head_out: torch.Tensor, features: EdgeFeatures) -> Gaussians:
        """-> Gaussians [B, V*h*w] (GaussianHead.decode)."""
        f = features
        return self.head.decode(head_out, f.backbone, f.images, f.viewmats, f.Ks)


def load(weights: Path) -> EdgeAdapter:
    """A predictor checkpoint (foresplat train / Predictor.save) -> EdgeAdapter."""
    return EdgeAdapter(Predictor.from_checkpoint(weights))
