"""The built-in "edge" backbone: a compact multi-view-stereo network for posed images.

    images [B,V,H,W,3] --per-view CNN--> F2 [BV,c0,H/2,W/2] --> F4 [BV,c1,H/4,W/4]   (F_s, s = feature_stride)
    F_s --1x1--> matching features --plane sweep over D inverse-depth planes--> cost [B,V,D,h_s,w_s]
    cat(cost, F_s) --U-Net--> U [BV,cu,h_s,w_s] --1x1--> logits [BV,D] --softmax--> p
    depth_s = 1 / sum_k p_k / d_k,  confidence = max_k p_k
    upsample U, 1/depth to the prediction stride, fuse with the encoder skip there ->
    features [B,V,c_out,h,w], depth = depth_s * exp(bounded log residual)

Presets (parameter counts of the whole predictor with the default head, see predictor.py):
edge-t (tests, ~0.1M), edge-s (~1M), edge-m (~3M), edge-l (~8M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from foresplat.models.backbone import Backbone, BackboneConfig, BackboneOutput, register_backbone
from foresplat.models.cost_volume import inverse_depth_candidates, plane_sweep_correlation, plane_sweep_photometric
from foresplat.models.geometry import scale_intrinsics
from foresplat.models.layers import ConvNormAct, Stage, UNet, small_init_


@dataclass
class EdgeConfig(BackboneConfig):
    """Settings of the edge backbone (see module docstring)."""

    name: Literal["edge"] = "edge"
    """Registry name of this backbone."""
    encoder_channels: tuple[int, int] = (32, 48)
    """Widths of the per-view encoder at stride 2 and stride 4."""
    encoder_blocks: int = 1
    """Residual blocks per encoder stage."""
    feature_stride: int = 4
    """Resolution of the cost volume: 2 or 4 (input / feature_stride)."""
    match_channels: int = 32
    """Channels of the matching features correlated in the cost volume."""
    num_depths: int = 32
    """Depth candidates D, uniform in inverse depth in [near, far]."""
    num_sources: int = 3
    """Each view is matched against its num_sources nearest other views (camera-centre distance)."""
    unet_channels: int = 48
    """Base width of the cost-volume U-Net."""
    unet_levels: int = 2
    """Resolution levels of the U-Net (each halves the resolution)."""
    unet_blocks: int = 1
    """Residual blocks per U-Net level."""
    out_channels: int = 32
    """Feature channels at the prediction resolution (input of the Gaussian head)."""
    depth_residual: float = 0.1
    """Bound of the learned log-depth correction at the prediction resolution (|delta log z| <= this)."""
    photometric_cost: bool = False
    """Also sweep the colours themselves (plane_sweep_photometric, no learned features): its
    per-pixel standardised cost enters the U-Net and, scaled by a learned gain, the depth logits,
    so an untrained network already does plane-sweep stereo and the learned part corrects it."""

    def validate(self) -> "EdgeConfig":
        """Raises ValueError naming the field when a setting is impossible."""
        super().validate()
        where = "EdgeConfig"
        if self.feature_stride not in (2, 4):
            raise ValueError(f"{where}.feature_stride: expected 2 or 4, got {self.feature_stride}")
        if self.prediction_stride > self.feature_stride:
            raise ValueError(f"{where}.prediction_stride: {self.prediction_stride} is coarser than "
                             f"feature_stride {self.feature_stride}; expected <= feature_stride")
        for f in ("match_channels", "unet_channels", "out_channels", "unet_levels"):
            if getattr(self, f) < 1:
                raise ValueError(f"{where}.{f}: expected >= 1, got {getattr(self, f)}")
        if len(self.encoder_channels) != 2 or min(self.encoder_channels) < 1:
            raise ValueError(f"{where}.encoder_channels: expected two positive widths, got {self.encoder_channels}")
        if self.num_depths < 2:
            raise ValueError(f"{where}.num_depths: expected >= 2 depth candidates, got {self.num_depths}")
        if self.num_sources < 1:
            raise ValueError(f"{where}.num_sources: expected >= 1, got {self.num_sources}")
        if self.encoder_blocks < 0 or self.unet_blocks < 0:
            raise ValueError(f"{where}.encoder_blocks/unet_blocks: expected >= 0")
        if not self.depth_residual >= 0:
            raise ValueError(f"{where}.depth_residual: expected >= 0, got {self.depth_residual}")
        return self


EDGE_PRESETS: dict[str, EdgeConfig] = {
    "edge-t": EdgeConfig(encoder_channels=(16, 24), encoder_blocks=1, match_channels=16, num_depths=16,
                         num_sources=2, unet_channels=24, unet_levels=2, unet_blocks=1, out_channels=16),
    "edge-s": EdgeConfig(encoder_channels=(32, 64), encoder_blocks=2, match_channels=32, num_depths=32,
                         num_sources=3, unet_channels=64, unet_levels=2, unet_blocks=1, out_channels=32),
    "edge-m": EdgeConfig(encoder_channels=(48, 96), encoder_blocks=1, match_channels=48, num_depths=48,
                         num_sources=3, unet_channels=64, unet_levels=3, unet_blocks=1, out_channels=48),
    "edge-l": EdgeConfig(encoder_channels=(64, 128), encoder_blocks=2, match_channels=64, num_depths=64,
                         num_sources=4, unet_channels=80, unet_levels=3, unet_blocks=2, out_channels=64),
    "edge-r": EdgeConfig(encoder_channels=(32, 48), encoder_blocks=1, feature_stride=2, match_channels=32,
                         num_depths=48, num_sources=3, unet_channels=48, unet_levels=3, unet_blocks=1,
                         out_channels=32, photometric_cost=True),
}


@register_backbone("edge", EdgeConfig)
class EdgeBackbone(Backbone[EdgeConfig]):
    """Per-view CNN + plane-sweep cost volume + U-Net depth/feature refinement (module docstring)."""

    def __init__(self, config: EdgeConfig):
        super().__init__(config)
        c = config
        c0, c1 = c.encoder_channels
        self.stage2 = Stage(3, c0, 2, c.encoder_blocks)  # stride 2
        self.stage4 = Stage(c0, c1, 2, c.encoder_blocks) if c.feature_stride == 4 else None
        cs = c1 if c.feature_stride == 4 else c0  # channels at the feature stride
        self.match = nn.Conv2d(cs, c.match_channels, 1)
        photo = c.num_depths if c.photometric_cost else 0
        self.unet = UNet(c.num_depths + photo + cs, c.unet_channels, c.unet_levels, c.unet_blocks)
        self.depth_logits = nn.Conv2d(c.unet_channels, c.num_depths, 1)
        if c.photometric_cost:
            self.depth_logits = small_init_(self.depth_logits)
            self.photo_gain = nn.Parameter(torch.tensor(2.0))  # logits += gain * (-standardised cost)
        skip = {1: 16, 2: c0, 4: c1}[c.prediction_stride]
        self.stage1 = ConvNormAct(3, skip) if c.prediction_stride == 1 else None  # full-res skip
        self.fuse = nn.Sequential(ConvNormAct(c.unet_channels + skip + 1, c.out_channels),
                                  ConvNormAct(c.out_channels, c.out_channels))
        self.depth_delta = small_init_(nn.Conv2d(c.out_channels, 1, 3, 1, 1))
        self.out_channels = c.out_channels
        self.divisor = c.feature_stride * 2 ** (c.unet_levels - 1)

    def forward(self, images: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                near: torch.Tensor, far: torch.Tensor) -> BackboneOutput:
        """See Backbone.forward; H and W must be multiples of `self.divisor`."""
        c = self.config
        B, V, H, W, _ = images.shape
        s, p = c.feature_stride, c.prediction_stride
        x = (images.reshape(B * V, H, W, 3).permute(0, 3, 1, 2) - 0.45) / 0.25  # [BV, 3, H, W]
        f2 = self.stage2(x)  # [BV, c0, H/2, W/2]
        fs = self.stage4(f2) if self.stage4 is not None else f2  # [BV, cs, H/s, W/s]
        hs, ws = H // s, W // s
        m = self.match(fs).reshape(B, V, -1, hs, ws)  # [B, V, Cm, hs, ws]
        invd = inverse_depth_candidates(near.to(x.dtype), far.to(x.dtype), c.num_depths)  # [B, D]
        Ks_s = scale_intrinsics(Ks, ws / W, hs / H)  # [B, V, 3, 3] at the feature resolution
        cost = plane_sweep_correlation(m, viewmats, Ks_s, invd, c.num_sources)  # [B, V, D, hs, ws]
        volumes = [cost.reshape(B * V, -1, hs, ws)]
        if c.photometric_cost:
            rgb = F.interpolate(images.reshape(B * V, H, W, 3).permute(0, 3, 1, 2), size=(hs, ws), mode="area")
            pc = plane_sweep_photometric(rgb.reshape(B, V, 3, hs, ws), viewmats, Ks_s, invd, c.num_sources)
            pc = pc.reshape(B * V, -1, hs, ws)  # [BV, D, hs, ws] mean |colour difference|
            pc = (pc - pc.mean(dim=1, keepdim=True)) / (pc.std(dim=1, keepdim=True) + 0.02)  # standardised per pixel
            volumes.append(pc)
        u = self.unet(torch.cat([*volumes, fs], dim=1))  # [BV, cu, hs, ws]
        logits = self.depth_logits(u)  # [BV, D, hs, ws]
        if c.photometric_cost:
            logits = logits - self.photo_gain * pc
        prob = torch.softmax(logits, dim=1)  # [BV, D, hs, ws]
        invd_v = invd.repeat_interleave(V, dim=0)[:, :, None, None]  # [BV, D, 1, 1]
        inv = (prob * invd_v).sum(dim=1, keepdim=True)  # [BV, 1, hs, ws] expected inverse depth
        conf = prob.amax(dim=1, keepdim=True)  # [BV, 1, hs, ws]
        h, w = H // p, W // p
        skip = {1: self.stage1(x) if self.stage1 is not None else None, 2: f2, 4: fs}[p]  # [BV, cskip, h, w]
        if (h, w) != (hs, ws):
            u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
            inv = F.interpolate(inv, size=(h, w), mode="bilinear", align_corners=False)
            conf = F.interpolate(conf, size=(h, w), mode="bilinear", align_corners=False)
        lo = (1.0 / far).to(x.dtype).repeat_interleave(V)[:, None, None, None]
        hi = (1.0 / near).to(x.dtype).repeat_interleave(V)[:, None, None, None]
        disp = (inv - lo) / (hi - lo)  # [BV, 1, h, w] normalized inverse depth in [0, 1]
        feats = self.fuse(torch.cat([u, skip, disp], dim=1))  # [BV, c_out, h, w]
        log_z = -torch.log(inv) + c.depth_residual * torch.tanh(self.depth_delta(feats))  # [BV, 1, h, w]
        return BackboneOutput(depth=torch.exp(log_z).reshape(B, V, h, w),
                              confidence=conf.reshape(B, V, h, w),
                              features=feats.reshape(B, V, -1, h, w))
