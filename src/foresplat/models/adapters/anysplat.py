"""AnySplat (via the optional package ffgs, pinned) behind the adapter interface; pose-free.

    adapter = load_adapter("anysplat", "weights/anysplat")   # model.safetensors (+ config.json)

encode (frozen, no_grad): ffgs's AnySplat parts in upstream's order: the VGGT aggregator (bfloat16
tokens, made float32), camera head -> predicted w2c + K, depth head -> depth -> world points, and
the voxel of each pixel's point (round(p / voxel_size); upstream's fusion grid).
head: `encoder.gaussian_param_head` (a DPT head over the tokens and the images), C channels per pixel:
    [density 1 | scale 3 | rotation 4 (x, y, z, w) | SH 3 x d_sh (colour-major) | fusion confidence 1].
decode (differentiable in the head): per voxel, the confidence-softmax-weighted mean of the pixels'
points and channels (upstream's voxel fusion), then, straight from the channels,
    opacity logit = density                        (upstream opacity sigmoid(density); a non-identity
                                                    opacity mapping at step 0 goes through its formula)
    log-scale     = min(log 0.001 + log softplus(s), log 0.3)   (upstream 0.001 softplus(s), cap 0.3)
    quat (w,x,y,z)= rotation[3, 0, 1, 2]           (upstream normalises x,y,z,w; foresplat normalises later)
    SH [K, 3]     = (SH * sh_mask)^T, bands above 3 dropped (foresplat renders degrees <= 3)
in AnySplat's frame (first predicted camera, its scale); given cameras, the predicted ones are fitted
to them (similarity, foresplat.models.adapters.similarity) and the Gaussians moved into their frame.
Input: images with sides multiples of 14 (AnySplat was trained at 448 x 448), values in [0, 1].
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from foresplat.gaussians import Gaussians
from foresplat.models.adapter import (ModelAdapter, import_pinned, load_state_strict, read_json_object,
                                      read_safetensors, weights_file)
from foresplat.models.adapters.similarity import Similarity, fit_batch, transform_gaussians

FFGS_VERSION = "0.1.0.dev1"
"""The ffgs release this adapter was written against (pinned by foresplat[anysplat])."""

_MODULES = ("modeling", "vggt.utils.pose_enc", "vggt.utils.geometry")


def ffgs_anysplat() -> dict[str, ModuleType]:
    """ffgs's AnySplat modules {modeling, vggt.utils.pose_enc, vggt.utils.geometry}.

    ffgs's top-level package imports torchvision (for its image preprocessing, unused here); where
    torchvision is absent, the packages above the AnySplat model are registered without running
    their __init__ (the model modules import only torch), so the installed ffgs code runs unchanged."""
    hint = (f"pip install 'foresplat[anysplat]', or, to keep a CPU torch without torchvision (as "
            f"scripts/install.sh does): pip install huggingface-hub && pip install --no-deps ffgs=={FFGS_VERSION}")

    def skip_package_inits() -> None:
        if importlib.util.find_spec("torchvision") is None:
            for name in ("ffgs", "ffgs.models", "ffgs.models.anysplat"):
                if name not in sys.modules:
                    sys.modules[name] = importlib.util.module_from_spec(importlib.util.find_spec(name))

    return import_pinned("anysplat", "ffgs", FFGS_VERSION, "ffgs.models.anysplat", _MODULES, hint,
                         prepare=skip_package_inits)


@dataclass
class AnySplatFeatures:
    """The frozen part's output for B scenes of V views at H x W."""

    tokens: list[torch.Tensor]  # aggregator layers, each [B, V, P, 2 * embed_dim] float32
    patch_start_idx: int
    images: torch.Tensor  # [B, V, 3, H, W]
    points: torch.Tensor  # [B, V, H, W, 3] world points of the predicted depth, AnySplat's frame
    voxel_index: list[torch.Tensor] | None  # B x [V*H*W] voxel of each pixel (None: no voxelisation)
    num_voxels: list[int] | None
    pred_c2w: torch.Tensor  # [B, V, 4, 4] predicted cameras, AnySplat's frame
    pred_Ks: torch.Tensor  # [B, V, 3, 3] predicted intrinsics, pixels
    alignment: list[Similarity] | None  # per scene: AnySplat's frame -> the given cameras' frame


def _log_softplus(x: torch.Tensor) -> torch.Tensor:
    """log(softplus(x)) without underflow (= x below -20, where softplus(x) = exp(x) to 1e-9)."""
    return torch.where(x < -20, x, torch.log(F.softplus(x.clamp_min(-20))))


def run_dpt_head(head: torch.nn.Module, features: Any) -> torch.Tensor:
    """ffgs's DPT Gaussian head on an adapter's features (tokens: list of [B, V, P, 2 x width] layer outputs,
    points [B, V, H, W, 3], images [B, V, 3, H, W], patch_start_idx) -> channels [B, V, C, H, W]."""
    H, W = features.images.shape[-2:]
    return head(features.tokens, features.points.flatten(0, 1).permute(0, 3, 1, 2), features.images,
                patch_start_idx=features.patch_start_idx, image_size=(H, W))


def gaussians_from_channels(feats: torch.Tensor, means: torch.Tensor, sh_degree: int, sh_mask: torch.Tensor,
                            opacity_exponent: float = 1.0) -> Gaussians:
    """AnySplat's fused channels feats [..., N, 8 + 3 d_sh] (density, scale, x y z w rotation, SH colour-major)
    and means [..., N, 3] -> Gaussians [..., N] in foresplat's raw parameters (module docstring)."""
    d_sh = (sh_degree + 1) ** 2
    if feats.shape[-1] != 8 + 3 * d_sh:
        raise ValueError(f"anysplat head channels: expected {8 + 3 * d_sh} for SH degree {sh_degree}, "
                         f"got {feats.shape[-1]}")
    density, s, rot, sh = feats.split([1, 3, 4, 3 * d_sh], dim=-1)
    if opacity_exponent == 1.0:
        logits = density[..., 0]
    else:  # upstream's map_pdf_to_opacity at global step 0
        p = torch.sigmoid(density[..., 0])
        op = (0.5 * (1 - (1 - p) ** opacity_exponent + p ** (1 / opacity_exponent))).clamp(1e-7, 1 - 1e-7)
        logits = torch.log(op) - torch.log1p(-op)
    log_scales = (math.log(0.001) + _log_softplus(s)).clamp_max(math.log(0.3))
    quats = rot[..., [3, 0, 1, 2]]
    sh = (sh.unflatten(-1, (3, d_sh)) * sh_mask.to(sh)).transpose(-1, -2)[..., : min(d_sh, 16), :]
    return Gaussians(means, quats, log_scales, logits, sh.contiguous())


class AnySplatAdapter(ModelAdapter):
    """ffgs's AnySplat as encode / head / decode (module docstring); everything but the head is frozen."""

    name = "anysplat"
    needs_cameras = False

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self._mods = ffgs_anysplat()
        cfg = model.encoder.cfg
        for f in ("render_conf", "opacity_conf", "gs_prune"):
            if getattr(cfg, f):
                raise ValueError(f"anysplat config.{f}: the adapter supports the released setting False")
        self.model = model.eval()
        self.head = model.encoder.gaussian_param_head
        self.freeze_backbone()

    @property
    def divisor(self) -> int:
        return int(self.model.encoder.cfg.patch_size)

    @property
    def sh_degree(self) -> int:
        return int(self.model.encoder.cfg.gaussian_adapter.sh_degree)

    def encode(self, images, viewmats=None, Ks=None, near=None, far=None) -> AnySplatFeatures:
        """images [B,V,H,W,3] in [0,1]; optional viewmats [B,V,4,4] (only to align the prediction) -> features."""
        enc = self.model.encoder
        B, V, H, W, _ = images.shape
        x = images.permute(0, 1, 4, 2, 3).float()  # [B, V, 3, H, W]
        pose = self._mods["vggt.utils.pose_enc"]
        geo = self._mods["vggt.utils.geometry"]
        with torch.no_grad():
            with torch.autocast("cuda", enabled=x.is_cuda, dtype=torch.bfloat16):
                tokens, psi = enc.aggregator(x.to(torch.bfloat16),
                                             intermediate_layer_idx=enc.cfg.intermediate_layer_idx)
            tokens = [t.float() for t in tokens]
            with torch.autocast("cuda", enabled=False):
                w2c, K = pose.pose_encoding_to_extri_intri(enc.camera_head(tokens)[-1], (H, W))  # [B,V,3,4], [B,V,3,3]
                depth, _ = enc.depth_head(tokens, images=x, patch_start_idx=psi)
                points = geo.batchify_unproject_depth_map_to_point_map(depth, w2c, K)  # [B, V, H, W, 3]
        bottom = w2c.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(B, V, 1, 4)
        pred_c2w = torch.linalg.inv(torch.cat([w2c, bottom], dim=-2))  # [B, V, 4, 4]
        voxel_index = num_voxels = None
        if enc.cfg.voxelize:
            voxel_index, num_voxels = [], []
            for b in range(B):
                cells = (points[b].reshape(-1, 3) / enc.cfg.voxel_size).round().int()
                _, inverse = torch.unique(cells, dim=0, return_inverse=True)
                voxel_index.append(inverse)
                num_voxels.append(int(inverse.max()) + 1)
        alignment = fit_batch(pred_c2w, viewmats)
        return AnySplatFeatures(tokens, psi, x, points, voxel_index, num_voxels, pred_c2w, K, alignment)

    def run_head(self, features: AnySplatFeatures) -> torch.Tensor:
        """-> the Gaussian head's channels [B, V, C, H, W] (C = 9 + 3 d_sh)."""
        return run_dpt_head(self.head, features)

    def decode(self, head_out: torch.Tensor, features: AnySplatFeatures) -> Gaussians:
        """Head channels [B, V, C, H, W] -> Gaussians [B, N] (N: voxels, or V*H*W without voxelisation)."""
        f = features
        enc = self.model.encoder
        B, V, C, H, W = head_out.shape
        chans = head_out.permute(0, 1, 3, 4, 2).reshape(B, V * H * W, C).float()  # [B, VHW, C]
        anchor, conf = chans[..., :-1], chans[..., -1]
        pts = f.points.reshape(B, V * H * W, 3)
        mapping = enc.cfg.opacity_mapping
        exponent = 2.0 ** float(mapping.initial)  # upstream's exponent at global step 0
        out = []
        for b in range(B):
            if f.voxel_index is None:
                fused_pts, fused = pts[b], anchor[b]
            else:
                idx, n = f.voxel_index[b], f.num_voxels[b]
                cmax = conf[b].new_empty(n).scatter_reduce(0, idx, conf[b], "amax", include_self=False)
                e = torch.exp(conf[b] - cmax[idx])  # [VHW]
                den = e.new_zeros(n).index_add(0, idx, e)
                wgt = (e / (den[idx] + 1e-6))[:, None]  # upstream's softmax weights per voxel
                fused_pts = pts.new_zeros(n, 3).index_add(0, idx, pts[b] * wgt)
                fused = anchor.new_zeros(n, anchor.shape[-1]).index_add(0, idx, anchor[b] * wgt)
            g = gaussians_from_channels(fused, fused_pts, self.sh_degree, enc.gaussian_adapter.sh_mask, exponent)
            if f.alignment is not None:
                g = transform_gaussians(g, f.alignment[b])
            out.append(g)
        counts = {g.num for g in out}
        if len(counts) > 1:
            raise ValueError(f"anysplat: the scenes of this batch fuse into different Gaussian counts "
                             f"{[g.num for g in out]}; run them one at a time (batch size 1)")
        return Gaussians.stack(out)


def build_from_weights(weights: Path, model: str,
                       seed: int = 0) -> tuple[torch.nn.Module, dict[str, torch.Tensor], Path, str]:
    """--weights of `model` (a folder with model.safetensors and optionally config.json, or a .safetensors
    file with config.json beside it, if any) -> (ffgs's AnySplat built from config.json's arguments, or
    the released model's without one, initialised from `seed` with the global generator untouched;
    the file's tensors; the file; " of CONFIG" naming the config used, or "", for error messages)."""
    mods = ffgs_anysplat()
    st = weights_file(weights, model)
    cfg_path = st.parent / "config.json"
    config = read_json_object(cfg_path, "the AnySplat config") if cfg_path.is_file() else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            net = mods["modeling"].AnySplat(**config)
        except TypeError as e:
            raise ValueError(f"{cfg_path}: not arguments of ffgs's AnySplat: {e}") from e
    return net, read_safetensors(st), st, f" of {cfg_path}" if config else ""


def load(weights: Path) -> AnySplatAdapter:
    """weights: a folder with model.safetensors and optionally config.json (ffgs AnySplat's arguments,
    as its save_pretrained writes; absent: the released model's), or a .safetensors file (config.json
    beside it, if any). Strict: every parameter must be present with its shape, and nothing else."""
    model, state, st, of_config = build_from_weights(weights, "anysplat")
    load_state_strict(model, state, str(st), "AnySplat" + of_config)
    return AnySplatAdapter(model)
