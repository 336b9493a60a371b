"""`GaussianHead`: pixel-aligned Gaussians from any backbone's output, in the refiner's raw space.

One Gaussian per prediction pixel per context view (N = V h w). For the pixel with centre
(u, v), camera-space ray r = K^-1 (u, v, 1) (z = 1), predicted depth z and pixel footprint
f = z / sqrt(fx fy) (world size of one prediction pixel at that depth):

    mean       = c2w(r z + f * (max_offset tanh(o_x), max_offset tanh(o_y), max_depth_offset tanh(o_z)))
    log_scale  = log(scale_init f) + max_log_scale_delta tanh(s)          (3 axes)
    quat       = q(R_c2w) * (q + (1, 0, 0, 0))                            (camera-frame quaternion -> world)
    opacity    = logit(opacity_init) + a
    sh DC      = rgb_to_sh_dc(pixel colour) + c0;  degree-1 band predicted in the camera frame and
                 rotated to the world frame (exact for degree 1)
where (o, s, q, a, c) are the outputs of a small conv net on [features, colour, normalized inverse
depth, confidence]; its last layer starts tiny, so an untrained head returns image-coloured,
footprint-sized Gaussians on the backbone's depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from foresplat.gaussians import SH_C0, Gaussians, rgb_to_sh_dc
from foresplat.models.backbone import BackboneOutput
from foresplat.models.geometry import matrix_to_quat, pixel_grid, quat_multiply, scale_intrinsics
from foresplat.models.layers import ConvNormAct, ResBlock, small_init_


@dataclass
class HeadConfig:
    """Settings of the Gaussian head (see module docstring)."""

    sh_degree: int = 1
    """SH degree of the predicted colours: 0 (DC only) or 1 (DC + view-dependent band)."""
    hidden_channels: int = 64
    """Width of the head's conv layers."""
    num_blocks: int = 1
    """Residual blocks after the first conv."""
    max_offset: float = 1.0
    """Bound of the mean's offset across the ray, in pixel footprints."""
    max_depth_offset: float = 2.0
    """Bound of the mean's offset along the optical axis, in pixel footprints."""
    scale_init: float = 0.5
    """Initial Gaussian standard deviation, in pixel footprints."""
    max_log_scale_delta: float = 3.0
    """Bound of the learned log-scale change (scales within scale_init f * exp(+-this))."""
    opacity_init: float = 0.5
    """Opacity of an untrained head (the bias of the opacity logit)."""

    def validate(self) -> "HeadConfig":
        """Raises ValueError naming the field when a setting is impossible."""
        if self.sh_degree not in (0, 1):
            raise ValueError(f"HeadConfig.sh_degree: the head predicts SH degree 0 or 1, got {self.sh_degree}")
        if self.hidden_channels < 1 or self.num_blocks < 0:
            raise ValueError(f"HeadConfig.hidden_channels/num_blocks: expected >= 1 / >= 0, "
                             f"got {self.hidden_channels}, {self.num_blocks}")
        for f in ("max_offset", "max_depth_offset", "max_log_scale_delta"):
            if not getattr(self, f) >= 0:
                raise ValueError(f"HeadConfig.{f}: expected >= 0, got {getattr(self, f)}")
        if not self.scale_init > 0:
            raise ValueError(f"HeadConfig.scale_init: expected > 0, got {self.scale_init}")
        if not 0 < self.opacity_init < 1:
            raise ValueError(f"HeadConfig.opacity_init: expected in (0, 1), got {self.opacity_init}")
        return self

    @property
    def num_sh(self) -> int:
        """K = (sh_degree + 1)^2 SH coefficients per colour channel."""
        return (self.sh_degree + 1) ** 2


def _rotate_sh1(sh1: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Degree-1 SH coefficients [..., 3 coeffs, 3 rgb] rotated by R [..., 3, 3] (camera -> world).

    In the 3DGS convention the band-1 colour is C1 (-y s1 + z s2 - x s3) = C1 v . d with
    v = (-s3, -s1, s2); rotating the function by R maps v to R v.
    """
    s1, s2, s3 = sh1.unbind(-2)  # [..., 3] each
    v = torch.stack([-s3, -s1, s2], dim=-2)  # [..., 3 xyz, 3 rgb]
    v = R @ v
    return torch.stack([-v[..., 1, :], v[..., 2, :], -v[..., 0, :]], dim=-2)


HeadOutput = Literal["position", "scale", "rotation", "opacity", "colour"]
"""A group of the head's raw channels: offset (3), log-scale (3), quaternion (4), opacity (1), SH colour
residual (3K)."""
HEAD_OUTPUTS: tuple[str, ...] = get_args(HeadOutput)
"""The groups in channel order."""


def check_head_outputs(outputs: tuple[str, ...], field: str) -> None:
    """Raises ValueError naming `field` unless outputs is a non-empty subset of HEAD_OUTPUTS."""
    if not outputs or not set(outputs) <= set(HEAD_OUTPUTS):
        raise ValueError(f"{field}: expected a non-empty subset of {list(HEAD_OUTPUTS)}, got {list(outputs)}")


class GaussianHead(nn.Module):
    """BackboneOutput (+ the views) -> Gaussians [B, V*h*w] in raw parameters (module docstring)."""

    def __init__(self, config: HeadConfig, in_channels: int):
        super().__init__()
        self.config = config.validate()
        c = config
        self.num_out = 3 + 3 + 4 + 1 + 3 * c.num_sh  # offset, log-scale, quat, opacity, sh
        self.body = nn.Sequential(ConvNormAct(in_channels + 3 + 2, c.hidden_channels),
                                  *(ResBlock(c.hidden_channels) for _ in range(c.num_blocks)))
        self.out = small_init_(nn.Conv2d(c.hidden_channels, self.num_out, 1), std=1e-2)
        self.restricted_to: tuple[str, ...] = ()  # set by restrict_training

    def output_rows(self, outputs: tuple[str, ...]) -> torch.Tensor:
        """Boolean mask [num_out] of the raw channels of the named HEAD_OUTPUTS groups."""
        check_head_outputs(outputs, "head outputs")
        sizes = dict(zip(HEAD_OUTPUTS, (3, 3, 4, 1, 3 * self.config.num_sh)))
        return torch.cat([torch.full((sizes[g],), g in outputs, dtype=torch.bool) for g in HEAD_OUTPUTS])

    def restrict_training(self, outputs: tuple[str, ...]) -> None:
        """Lets training change only the named outputs: the body is frozen, and gradient hooks zero the
        last layer's rows of every other group (their weights then stay exactly as loaded, provided the
        optimizer does not decay them: build_optimizer leaves `out` undecayed when restricted)."""
        keep = self.output_rows(outputs)
        self.body.requires_grad_(False)
        self.out.weight.register_hook(lambda g: g * keep.to(g).view(-1, 1, 1, 1))
        self.out.bias.register_hook(lambda g: g * keep.to(g))
        self.restricted_to = tuple(outputs)

    def forward(self, feats: BackboneOutput, images: torch.Tensor, viewmats: torch.Tensor,
                Ks: torch.Tensor, near: torch.Tensor, far: torch.Tensor) -> Gaussians:
        """feats at h x w; images [B,V,H,W,3]; viewmats, Ks [B,V,...] (full resolution); near, far [B]
        -> Gaussians with means [B, V*h*w, 3] (view-major, then row-major pixels)."""
        return self.decode(self.raw(feats, images, near, far), feats, images, viewmats, Ks)

    def _colour(self, feats: BackboneOutput, images: torch.Tensor) -> torch.Tensor:
        """The views' colours at the prediction resolution [B*V, 3, h, w] (area-averaged)."""
        B, V, H, W, _ = images.shape
        h, w = feats.depth.shape[-2:]
        rgb = images.reshape(B * V, H, W, 3).permute(0, 3, 1, 2).to(feats.features.dtype)  # [BV, 3, H, W]
        return F.interpolate(rgb, size=(h, w), mode="area") if (h, w) != (H, W) else rgb

    def raw(self, feats: BackboneOutput, images: torch.Tensor, near: torch.Tensor,
            far: torch.Tensor) -> torch.Tensor:
        """The conv net: feats at h x w, images [B,V,H,W,3], near, far [B] -> raw channels
        [B, V, h*w, num_out] = (offset 3, log-scale 3, quat 4, opacity 1, sh 3K) per pixel."""
        B, V = images.shape[:2]
        h, w = feats.depth.shape[-2:]
        dtype = feats.features.dtype
        rgb = self._colour(feats, images)  # [BV, 3, h, w]
        depth = feats.depth.reshape(B * V, 1, h, w)  # [BV, 1, h, w]
        lo = (1.0 / far).to(dtype).repeat_interleave(V)[:, None, None, None]
        hi = (1.0 / near).to(dtype).repeat_interleave(V)[:, None, None, None]
        disp = (1.0 / depth - lo) / (hi - lo)  # [BV, 1, h, w]
        x = torch.cat([feats.features.reshape(B * V, -1, h, w), (rgb - 0.45) / 0.25, disp,
                       feats.confidence.reshape(B * V, 1, h, w)], dim=1)
        raw = self.out(self.body(x))  # [BV, num_out, h, w]
        return raw.reshape(B, V, self.num_out, h * w).transpose(-1, -2)  # [B, V, hw, num_out]

    def decode(self, raw: torch.Tensor, feats: BackboneOutput, images: torch.Tensor, viewmats: torch.Tensor,
               Ks: torch.Tensor) -> Gaussians:
        """The geometry (module docstring): raw [B, V, h*w, num_out] from `raw`, feats (depth) at h x w,
        images [B,V,H,W,3], viewmats, Ks [B,V,...] -> Gaussians [B, V*h*w]."""
        c = self.config
        B, V, H, W, _ = images.shape
        h, w = feats.depth.shape[-2:]
        dtype = feats.features.dtype
        rgb = self._colour(feats, images)  # [BV, 3, h, w]
        depth = feats.depth.reshape(B * V, 1, h, w)  # [BV, 1, h, w]
        off, dls, q, op, shr = raw.split([3, 3, 4, 1, 3 * c.num_sh], dim=-1)

        K = scale_intrinsics(Ks.to(dtype), w / W, h / H)  # [B, V, 3, 3] at prediction resolution
        rays = (torch.linalg.inv(K) @ pixel_grid(h, w, raw.device, dtype)).transpose(-1, -2)  # [B, V, hw, 3]
        z = depth.reshape(B, V, h * w, 1)  # [B, V, hw, 1]
        foot = z / torch.sqrt(K[..., 0, 0] * K[..., 1, 1])[..., None, None]  # [B, V, hw, 1]
        bound = off.new_tensor([c.max_offset, c.max_offset, c.max_depth_offset])
        x_cam = rays * z + foot * bound * torch.tanh(off)  # [B, V, hw, 3]
        c2w = torch.linalg.inv(viewmats.to(dtype))  # [B, V, 4, 4]
        R = c2w[..., :3, :3]  # [B, V, 3, 3]
        means = x_cam @ R.transpose(-1, -2) + c2w[..., None, :3, 3]  # [B, V, hw, 3]

        log_scales = torch.log(foot * c.scale_init) + c.max_log_scale_delta * torch.tanh(dls)  # [B, V, hw, 3]
        q_cam = q + q.new_tensor([1.0, 0.0, 0.0, 0.0])  # [B, V, hw, 4]
        quats = quat_multiply(matrix_to_quat(R)[..., None, :], q_cam)  # [B, V, hw, 4]
        opacity_logits = op[..., 0] + math.log(c.opacity_init / (1 - c.opacity_init))  # [B, V, hw]

        colour = rgb.reshape(B, V, 3, h * w).transpose(-1, -2)  # [B, V, hw, 3]
        sh = shr.reshape(B, V, h * w, c.num_sh, 3) / SH_C0  # residual in colour units
        dc = rgb_to_sh_dc(colour) + sh[..., 0, :]  # [B, V, hw, 3]
        bands = [dc[..., None, :]]
        if c.sh_degree == 1:
            bands.append(_rotate_sh1(sh[..., 1:4, :], R[:, :, None]))  # [B, V, hw, 3, 3]
        sh_all = torch.cat(bands, dim=-2)  # [B, V, hw, K, 3]

        n = V * h * w
        return Gaussians(means.reshape(B, n, 3), quats.reshape(B, n, 4), log_scales.reshape(B, n, 3),
                         opacity_logits.reshape(B, n), sh_all.reshape(B, n, c.num_sh, 3))
