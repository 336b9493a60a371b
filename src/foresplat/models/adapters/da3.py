"""Depth Anything 3 with its 3DGS head (optional package depth-anything-3, pinned) behind the adapter
interface; pose-free.

    adapter = load_adapter("da3", "weights/da3-giant")   # model.safetensors + config.json

encode (frozen, no_grad): the DepthAnything3Net parts in upstream's order on ImageNet-normalised
images: DinoV2 backbone (reference view chosen by `saddle_balanced`, as upstream), depth head ->
depth, camera decoder -> predicted w2c + K. The package's wrapper runs under inference_mode, so
the net's parts are called directly.
head: `gs_head` (GSDPT), run with conf_activation "linear" so that it returns the opacity logit
itself (upstream: sigmoid, then an identity opacity mapping). Channels per pixel, camera frame:
    [xy offset 2 | scale 3 | rotation 4 (x, y, z, w) | SH 3 x d_sh (colour-major) | depth offset 1 | opacity 1]
decode (upstream's gs_adapter, straight from the channels): depth d' = depth + offset, pixel
(u, v) + xy offset / (W, H) -> unit ray in the camera -> mean = c + d' R_c2w ray (d' along the ray);
    log-scale = log(s_min + (s_max - s_min) sigmoid(s)) + log|d'| + log(0.1 (1/fx + 1/fy))
    quat      = P(q(R_c2w) * rotation[2, 3, 0, 1]),  P(w, x, y, z) = (x, y, z, w)
    SH        = (SH * sh_mask)^T rotated by R_c2w
The quaternion is upstream's gs_adapter as it runs in depth-anything-3 0.1.1: it reorders the
channels x,y,z,w -> w,x,y,z and then reads them with a scalar-last converter, and returns the world
quaternion scalar-last where its renderer (gsplat) and .ply export read scalar-first. foresplat
reproduces the rotation DA3's own renders use, so fine-tuning starts from the splat DA3 renders.
in DA3's frame; given cameras, the predicted ones are fitted to them (similarity) and the Gaussians
moved into their frame (upstream instead rescales the predicted poses only: same up to that fit).
Input: sides multiples of 14, values in [0, 1]. Presets with a 3DGS head: da3-giant, and
da3nested-giant-large, whose any-view giant branch is used (its metric-scale branch is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from foresplat.gaussians import Gaussians
from foresplat.models.adapter import (ModelAdapter, import_pinned, load_state_strict, read_json_object,
                                      read_safetensors, weights_file)
from foresplat.models.adapters.similarity import Similarity, align_batch, fit_batch, sh_rotation
from foresplat.models.geometry import matrix_to_quat, quat_multiply

DA3_VERSION = "0.1.1"
"""The depth-anything-3 release this adapter was written against (pinned by foresplat[da3])."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def da3_modules() -> dict[str, ModuleType]:
    """depth_anything_3's {cfg, registry, model.utils.transform, utils.geometry, model.gs_adapter}
    (MissingExtraError if the pinned package, or a module its model code imports, is absent)."""
    hint = (f"pip install 'foresplat[da3]', or, keeping a CPU torch (as scripts/install.sh does): "
            f"pip install addict omegaconf einops e3nn && pip install --no-deps depth-anything-3=={DA3_VERSION} evo")
    names = ("cfg", "registry", "model.utils.transform", "utils.geometry", "model.gs_adapter")
    return import_pinned("da3", "depth-anything-3", DA3_VERSION, "depth_anything_3", names, hint)


@dataclass
class DA3Features:
    """The frozen part's output for B scenes of V views at H x W."""

    feats: list[Any]  # backbone layers: (camera token [B, V, C], tokens [B, V, P, C]) each
    images: torch.Tensor  # [B, V, 3, H, W] ImageNet-normalised (the net's input)
    depth: torch.Tensor  # [B, V, H, W]
    pred_c2w: torch.Tensor  # [B, V, 4, 4] predicted cameras, DA3's frame
    pred_Ks: torch.Tensor  # [B, V, 3, 3] predicted intrinsics, pixels
    alignment: list[Similarity] | None  # per scene: DA3's frame -> the given cameras' frame


def _float(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float()
    return type(x)(_float(t) for t in x)


class DA3Adapter(ModelAdapter):
    """DepthAnything3Net (with gs_head / gs_adapter) as encode / head / decode (module docstring)."""

    name = "da3"
    needs_cameras = False

    def __init__(self, net: torch.nn.Module, ref_view_strategy: str = "saddle_balanced"):
        super().__init__()
        self._mods = da3_modules()
        if isinstance(getattr(net, "da3", None), torch.nn.Module) and hasattr(net, "da3_metric"):
            net = net.da3  # a nested preset: its any-view branch (with the 3DGS head); the metric branch is unused
        if getattr(net, "gs_head", None) is None or getattr(net, "gs_adapter", None) is None:
            raise ValueError("da3: this network has no 3DGS head (gs_head / gs_adapter); the giant "
                             "DepthAnything3Net presets have one")
        if net.cam_dec is None:
            raise ValueError("da3: this network has no camera decoder (cam_dec); the adapter needs predicted cameras")
        ad, head = net.gs_adapter, net.gs_head
        if ad.pred_color or not ad.pred_offset_xy or not ad.pred_offset_depth:
            raise ValueError("da3 gs_adapter: the adapter supports pred_color false with xy and depth offsets "
                             "(the released setting)")
        if head.activation != "linear" or head.conf_activation != "sigmoid" or head.conf_dim != 1:
            raise ValueError(f"da3 gs_head: expected activation linear, conf_activation sigmoid, conf_dim 1 "
                             f"(released), got {head.activation}, {head.conf_activation}, {head.conf_dim}")
        head.conf_activation = "linear"  # the head now returns the opacity logit (module docstring)
        self.net = net.eval()
        self.head = head
        self.ref_view_strategy = ref_view_strategy
        self.freeze_backbone()

    @property
    def divisor(self) -> int:
        return int(self.net.PATCH_SIZE)

    def encode(self, images, viewmats=None, Ks=None, near=None, far=None) -> DA3Features:
        """images [B,V,H,W,3] in [0,1]; optional viewmats [B,V,4,4] (only to align the prediction) -> features."""
        B, V, H, W, _ = images.shape
        mean = images.new_tensor(IMAGENET_MEAN)
        std = images.new_tensor(IMAGENET_STD)
        x = ((images.float() - mean) / std).permute(0, 1, 4, 2, 3).contiguous()  # [B, V, 3, H, W]
        with torch.no_grad():
            with torch.autocast("cuda", enabled=x.is_cuda, dtype=torch.bfloat16):
                feats, _ = self.net.backbone(x, cam_token=None, export_feat_layers=[],
                                             ref_view_strategy=self.ref_view_strategy)
            feats = _float(feats)
            with torch.autocast(x.device.type, enabled=False):
                out = self.net._process_depth_head(feats, H, W)
                out = self.net._process_camera_estimation(feats, H, W, out)
        w2c = self._mods["utils.geometry"].as_homogeneous(out.extrinsics)  # [B, V, 4, 4]
        pred_c2w = torch.linalg.inv(w2c.float())
        alignment = fit_batch(pred_c2w, viewmats)
        return DA3Features(feats, x, out.depth.float(), pred_c2w, out.intrinsics.float(), alignment)

    def run_head(self, features: DA3Features) -> torch.Tensor:
        """-> the 3DGS head's channels [B, V, H, W, C] (C = 11 + 3 d_sh, the last the opacity logit)."""
        f = features
        H, W = f.images.shape[-2:]
        out = self.head(feats=f.feats, H=H, W=W, patch_start_idx=0, images=f.images)
        return torch.cat([out["raw_gs"], out["raw_gs_conf"][..., None]], dim=-1)

    def decode(self, head_out: torch.Tensor, features: DA3Features) -> Gaussians:
        """Head channels [B, V, H, W, C] -> Gaussians [B, V*H*W] (module docstring)."""
        f = features
        ad = self.net.gs_adapter
        B, V, H, W, C = head_out.shape
        d_sh = ad.d_sh
        if C != 2 + 3 + 4 + 3 * d_sh + 1 + 1:
            raise ValueError(f"da3 head channels: expected {11 + 3 * d_sh} for SH degree {ad.sh_degree}, got {C}")
        off_xy, s, rot, sh, off_d, logit = head_out.float().split([2, 3, 4, 3 * d_sh, 1, 1], dim=-1)
        depth = f.depth + off_d[..., 0]  # [B, V, H, W]
        K, c2w = f.pred_Ks, f.pred_c2w  # [B, V, 3, 3], [B, V, 4, 4]
        R = c2w[..., :3, :3]
        ys, xs = torch.meshgrid(torch.arange(H, device=depth.device, dtype=depth.dtype) + 0.5,
                                torch.arange(W, device=depth.device, dtype=depth.dtype) + 0.5, indexing="ij")
        u = xs + off_xy[..., 0]  # [B, V, H, W] pixels
        v = ys + off_xy[..., 1]
        pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [B, V, H, W, 3]
        ray = pix @ torch.linalg.inv(K).transpose(-1, -2)[:, :, None]  # [B, V, H, W, 3]
        ray = ray / ray.norm(dim=-1, keepdim=True)
        means = (ray @ R.transpose(-1, -2)[:, :, None]) * depth[..., None] + c2w[:, :, None, None, :3, 3]

        mult = 0.1 * (torch.linalg.inv(K[..., :2, :2]) @ K.new_ones(2)).sum(-1)  # [B, V]: 0.1 (1/fx + 1/fy)
        log_scales = (torch.log(ad.gaussian_scale_min + (ad.gaussian_scale_max - ad.gaussian_scale_min)
                                * torch.sigmoid(s)) + torch.log(depth.abs().clamp_min(1e-12))[..., None]
                      + torch.log(mult)[:, :, None, None, None])
        # upstream's order conventions, reproduced (module docstring): the camera quaternion is read
        # with the scalar at channel 2, and the world quaternion's (x, y, z, w) is what its renderer
        # and .ply export take as (w, x, y, z)
        q_world = quat_multiply(matrix_to_quat(R)[:, :, None, None], rot[..., [2, 3, 0, 1]])
        quats = q_world[..., [1, 2, 3, 0]]
        sh = (sh.unflatten(-1, (3, d_sh)) * ad.sh_mask.to(sh)).transpose(-1, -2)  # [B, V, H, W, d_sh, 3]
        M = torch.stack([torch.stack([sh_rotation(R[b, i], d_sh) for i in range(V)]) for b in range(B)])
        sh = M.to(sh)[:, :, None, None] @ sh  # [B, V, H, W, d_sh, 3] world frame

        n = V * H * W
        g = Gaussians(means.reshape(B, n, 3), quats.reshape(B, n, 4), log_scales.reshape(B, n, 3),
                      logit.reshape(B, n), sh.reshape(B, n, d_sh, 3))
        return align_batch(g, f.alignment)


def build_net(config: dict[str, Any], where: str) -> torch.nn.Module:
    """DepthAnything3Net from config.json's {"model_name": a depth-anything-3 preset} or {"config": the
    network config in the package's YAML layout}; ValueError naming `where` otherwise."""
    mods = da3_modules()
    from omegaconf import OmegaConf

    if "config" in config:
        cfg = OmegaConf.create(config["config"])
    elif "model_name" in config:
        presets = mods["registry"].MODEL_REGISTRY
        if config["model_name"] not in presets:
            raise ValueError(f"{where}: model_name {config['model_name']!r} is not a depth-anything-3 "
                             f"preset; available: {sorted(presets)}")
        cfg = mods["cfg"].load_config(presets[config["model_name"]])
    else:
        raise ValueError(f"{where}: expected a 'model_name' (a depth-anything-3 preset) or a 'config'")
    try:
        return mods["cfg"].create_object(cfg)
    except Exception as e:  # omegaconf / the net's constructors raise various types for a bad config
        raise ValueError(f"{where}: cannot build a DepthAnything3Net: {type(e).__name__}: {e}") from e


def load(weights: Path) -> DA3Adapter:
    """weights: a folder with model.safetensors and config.json (as the package's save_pretrained
    writes: keys may carry the wrapper's "model." prefix), or a .safetensors file with config.json
    beside it. Strict: every parameter present with its shape, and nothing else."""
    da3_modules()
    st = weights_file(weights, "da3")
    cfg_path = st.parent / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"--weights: {cfg_path} does not exist (model 'da3' needs the config.json "
                                "that comes with the weights)")
    net = build_net(read_json_object(cfg_path, "the Depth Anything 3 config"), str(cfg_path))
    state = read_safetensors(st)
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    load_state_strict(net, state, str(st), f"the DepthAnything3Net of {cfg_path}")
    return DA3Adapter(net)

