"""Pi3X (frozen, package pi3 from a clone) + a new Gaussian head (ffgs's DPT head class): the `pi3x` adapter.

    adapter = load_adapter("pi3x", "weights/pi3x")     # Pi3X's model.safetensors (+ config.json)
    foresplat train --model pi3x --weights weights/pi3x --rule metagrad ... --out runs/pi3x_gs
    foresplat predict SCENE --model pi3x --weights weights/pi3x --head runs/pi3x_gs/head

Pi3X has no Gaussian head. encode (frozen, no_grad) runs upstream's Pi3X forward on the images alone
(its depth / ray / pose prior branches are loaded but not run; with no priors they add nothing):
the DINOv2 encoder, the decoder of alternating frame / global blocks, and the point, confidence,
camera and metric heads -> world points (camera pose @ local points, times the metric scale) and
camera-to-world poses; the intrinsics are the least-squares fit of the local points' x/z, y/z to the
pixel centres. Forward hooks keep the tokens of four decoder block pairs (a frame and a global block,
outputs concatenated, 2 x width, the layout of VGGT's aggregator layers; pair indices
`GS_LAYERS`), registers included (`patch_start_idx`).
head: a new DPT-style Gaussian head over those tokens and the images, ffgs's `VGGT_DPT_GS_Head` (the
class of the vggt adapter's head), C = 8 + 3 d_sh channels per pixel
    [density 1 | scale 3 | rotation 4 (x, y, z, w) | SH 3 x d_sh (colour-major)],
initialised from a fixed seed (`HEAD_SEED`) until a fine-tuned head is given (`--head`).
decode (differentiable in the head): one Gaussian per pixel at Pi3X's world point, the channels
converted as the anysplat adapter converts them (anysplat.gaussians_from_channels: opacity logit =
density, log-scale = min(log 0.001 + log softplus(s), log 0.3), quat = rotation[3, 0, 1, 2], SH bands
l >= 1 damped by 0.1 * 0.25^l as AnySplat's adapter does), in Pi3X's frame; given cameras, the
predicted ones are fitted to them (similarity) and the Gaussians moved into their frame.
Weights: Pi3X's released model.safetensors (every key, strictly). config.json beside it, if present,
holds {"pi3x": sizes (`build_pi3x`; absent: upstream's Pi3X()), "gs_channels": the head's
out_channels, "gs_layers": pair indices, "sh_degree": d >= 3}; absent: the released Pi3X,
GS_HEAD_CHANNELS, GS_LAYERS, degree 3 (degrees above 3 are predicted and dropped, as in anysplat).
Input: images with sides multiples of 14, values in [0, 1].
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from foresplat.gaussians import Gaussians
from foresplat.models.adapter import (ModelAdapter, import_pinned, load_state_strict, read_json_object,
                                      read_safetensors, weights_file)
from foresplat.models.adapters.anysplat import ffgs_anysplat, gaussians_from_channels, run_dpt_head
from foresplat.models.adapters.similarity import Similarity, align_batch, fit_batch

PI3_VERSION = "0.1"
"""The pi3 version (its pyproject.toml) of the clone this adapter was written against (commit 9fa3ddb)."""

PI3_HINT = ("pi3 has no PyPI package; install a clone without its dependencies (they pin torch and "
            "torchvision): git clone https://github.com/yyfz/Pi3 && pip install --no-deps ./Pi3")

_MODULES = ("models.pi3x", "models.dinov2.models.vision_transformer", "models.dinov2.layers",
            "models.layers.block", "models.layers.attention", "models.layers.conv_head",
            "models.layers.camera_head", "models.layers.transformer_head", "models.layers.pos_embed")

HEAD_SEED = 0
"""Seed of the new Gaussian head's initialisation (the same head for every load)."""

PATCH = 14
"""Pi3X's patch size (fixed upstream)."""

GS_HEAD_CHANNELS = [256, 512, 1024, 1024]
"""VGGT_DPT_GS_Head's out_channels (the widths of its four token projections) at the released size, as
AnySplat's. Its fusion width is fixed at 256 and it needs > 50 output channels (SH degree >= 3), as
in AnySplat."""

GS_LAYERS = [4, 9, 13, 17]
"""Decoder block pairs (blocks 2i, 2i+1) whose tokens feed the head (the released decoder has 18 pairs;
the last one is what upstream's own heads read)."""

RELEASED: dict[str, Any] = dict(
    embed_dim=1024, img_size=518, encoder_depth=24, encoder_heads=16, decoder_depth=36, decoder_heads=16,
    head_dim=1024, head_heads=16, head_depth=5, camera_dim=512, metric_dim=512, metric_heads=8,
    upsample=[256, 128, 64], last_conv_channels=32, pose_inject_blocks=5, multimodal=True)
"""`build_pi3x`'s sizes of the released Pi3X (what Pi3X() builds)."""


def pi3_modules() -> dict[str, ModuleType]:
    """pi3's modules used here {name: pi3.NAME} (`_MODULES`), from pi3==PI3_VERSION; MissingExtraError naming
    the clone install otherwise. pi3's model code imports torch, numpy, safetensors and huggingface_hub
    (not torchvision, which only its image utilities import)."""
    return import_pinned("pi3x", "pi3", PI3_VERSION, "pi3", _MODULES, PI3_HINT)


def gs_head_class() -> type[nn.Module]:
    """ffgs's VGGT_DPT_GS_Head (needs ffgs, as the vggt adapter does: foresplat[anysplat])."""
    ffgs_anysplat()
    return importlib.import_module("ffgs.models.anysplat.gs_head").VGGT_DPT_GS_Head


def build_pi3x(sizes: dict[str, Any] | None = None) -> nn.Module:
    """Upstream's Pi3X class with its parts built from pi3's classes at `sizes` (keys of RELEASED; missing
    ones take the released value) and random weights from the global generator; None: upstream's own
    Pi3X() (the released architecture). Parameter names are upstream's, so the weights of a Pi3X of
    those sizes load strictly (at RELEASED: the same 1873 names and shapes as Pi3X(), 1.36e9 parameters,
    checked against pi3 0.1 at 9fa3ddb). ValueError for an unknown key."""
    m = pi3_modules()
    if sizes is None:
        return m["models.pi3x"].Pi3X()
    unknown = sorted(set(sizes) - set(RELEASED))
    if unknown:
        raise ValueError(f"pi3x sizes: unknown keys {unknown}; expected some of {sorted(RELEASED)}")
    s = {**RELEASED, **sizes}
    D = int(s["embed_dim"])
    blocks, attn, layers = m["models.layers.block"], m["models.layers.attention"], m["models.dinov2.layers"]
    heads, conv = m["models.layers.transformer_head"], m["models.layers.conv_head"]
    norm = partial(nn.LayerNorm, eps=1e-6)
    net = m["models.pi3x"].Pi3X.__new__(m["models.pi3x"].Pi3X)
    nn.Module.__init__(net)
    net.use_multimodal = bool(s["multimodal"])
    net.encoder = m["models.dinov2.models.vision_transformer"].DinoVisionTransformer(
        img_size=s["img_size"], patch_size=PATCH, embed_dim=D, depth=s["encoder_depth"], num_heads=s["encoder_heads"],
        mlp_ratio=4, block_fn=partial(layers.NestedTensorBlock, attn_class=layers.MemEffAttention),
        num_register_tokens=4, init_values=1.0, ffn_layer="mlp", block_chunks=0, interpolate_antialias=True,
        interpolate_offset=0.0)
    del net.encoder.mask_token
    net.patch_size = PATCH
    pos = m["models.layers.pos_embed"]
    net.rope = pos.RoPE2D(freq=100)
    net.position_getter = pos.PositionGetter()
    block = dict(mlp_ratio=4, qkv_bias=True, proj_bias=True, ffn_bias=True, drop_path=0.0, norm_layer=norm,
                 act_layer=nn.GELU, ffn_layer=layers.Mlp, init_values=0.01, qk_norm=True)
    net.decoder = nn.ModuleList([blocks.BlockRope(dim=D, num_heads=s["decoder_heads"], attn_class=attn.FlashAttentionRope,
                                                  rope=net.rope, **block) for _ in range(s["decoder_depth"])])
    net.dec_embed_dim = D
    net.patch_start_idx = 5
    net.register_token = nn.Parameter(torch.randn(1, 1, 5, D) * 1e-6)
    if net.use_multimodal:
        net.depth_encoder = copy.deepcopy(net.encoder)
        net.depth_encoder.patch_embed = layers.PatchEmbed(img_size=224, patch_size=PATCH, in_chans=2, embed_dim=D)
        net.depth_emb = nn.Parameter(torch.zeros(1, 1, D))
        net.ray_embed = layers.PatchEmbed(img_size=224, patch_size=PATCH, in_chans=2, embed_dim=D)
        net.pose_inject_blk = nn.ModuleList([blocks.PoseInjectBlock(dim=D, num_heads=s["decoder_heads"], **block)
                                             for _ in range(s["pose_inject_blocks"])])
    hd = int(s["head_dim"])
    dense = dict(dec_embed_dim=hd, dec_num_heads=s["head_heads"], depth=s["head_depth"], rope=net.rope)
    convhead = dict(num_features=4, dim_in=D, projects=nn.Identity(), dim_proj=hd, dim_upsample=list(s["upsample"]),
                    dim_times_res_block_hidden=2, num_res_blocks=2, res_block_norm="group_norm", last_res_blocks=0,
                    last_conv_channels=s["last_conv_channels"], last_conv_size=1, using_uv=True)
    net.point_decoder = heads.TransformerDecoder(in_dim=2 * D, out_dim=hd, **dense)
    net.point_head = conv.ConvHead(dim_out=[2, 1], **convhead)
    net.camera_decoder = heads.TransformerDecoder(in_dim=2 * D, out_dim=s["camera_dim"], **dense)
    net.camera_head = m["models.layers.camera_head"].CameraHead(dim=s["camera_dim"])
    net.metric_token = nn.Parameter(torch.randn(1, 1, 2 * D) * 1e-6)
    net.metric_decoder = heads.ContextOnlyTransformerDecoder(
        in_dim=2 * D, dec_embed_dim=s["metric_dim"], dec_num_heads=s["metric_heads"], out_dim=s["metric_dim"],
        depth=s["head_depth"], rope=net.rope)
    net.metric_head = nn.Linear(s["metric_dim"], 1)
    net.conf_decoder = heads.TransformerDecoder(in_dim=2 * D, out_dim=hd, **dense)
    net.conf_head = conv.ConvHead(dim_out=[1], **convhead)
    net.register_buffer("image_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    net.register_buffer("image_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    return net


def build_gs_head(width: int, sh_degree: int = 3, out_channels: list[int] | None = None) -> nn.Module:
    """A new VGGT_DPT_GS_Head over four token layers of 2 x `width` channels (Pi3X's decoder width; 1024
    released) with 8 + 3 (d+1)^2 output channels and `out_channels` (default GS_HEAD_CHANNELS); weights
    from the global generator. ValueError for an SH degree below 3."""
    if sh_degree < 3:
        raise ValueError(f"pi3x sh_degree: ffgs's Gaussian head needs SH degree >= 3, got {sh_degree}")
    return gs_head_class()(dim_in=2 * width, patch_size=(PATCH, PATCH),
                           output_dim=8 + 3 * (sh_degree + 1) ** 2, features=256,
                           out_channels=list(out_channels or GS_HEAD_CHANNELS), intermediate_layer_idx=[0, 1, 2, 3])


@dataclass
class Pi3XFeatures:
    """The frozen part's output for B scenes of V views at H x W."""

    tokens: list[torch.Tensor]  # 4 decoder pairs, each [B, V, 5 + H/14 * W/14, 2 * width] float32
    patch_start_idx: int
    images: torch.Tensor  # [B, V, 3, H, W]
    points: torch.Tensor  # [B, V, H, W, 3] Pi3X's world points (metric scale), its frame
    conf: torch.Tensor  # [B, V, H, W] Pi3X's confidence logits
    pred_c2w: torch.Tensor  # [B, V, 4, 4] predicted camera-to-world (OpenCV), Pi3X's frame
    pred_Ks: torch.Tensor  # [B, V, 3, 3] intrinsics fitted to the local points, pixels (centres at +0.5)
    alignment: list[Similarity] | None  # per scene: Pi3X's frame -> the given cameras' frame


def intrinsics_from_local_points(local: torch.Tensor) -> torch.Tensor:
    """Camera-frame points local [..., H, W, 3] (z > 0) -> K [..., 3, 3]: per axis, the least-squares line
    u = f x/z + c through the pixel centres u + 0.5 (foresplat's convention), no skew."""
    H, W = local.shape[-3:-1]
    xy = local[..., :2] / local[..., 2:3].clamp_min(1e-8)  # [..., H, W, 2]
    v, u = torch.meshgrid(torch.arange(H, dtype=local.dtype, device=local.device) + 0.5,
                          torch.arange(W, dtype=local.dtype, device=local.device) + 0.5, indexing="ij")
    K = local.new_zeros(*local.shape[:-3], 3, 3)
    for axis, pix in ((0, u), (1, v)):
        a = xy[..., axis].flatten(-2)  # [..., HW]
        p = pix.reshape(-1)
        ac = a - a.mean(-1, keepdim=True)
        f = (ac * (p - p.mean())).sum(-1) / (ac * ac).sum(-1).clamp_min(1e-12)
        K[..., axis, axis] = f
        K[..., axis, 2] = p.mean() - f * a.mean(-1)
    K[..., 2, 2] = 1.0
    return K


class Pi3XAdapter(ModelAdapter):
    """Upstream's Pi3X (frozen) with a new Gaussian head (module docstring)."""

    name = "pi3x"
    needs_cameras = False

    def __init__(self, net: nn.Module, head: nn.Module, sh_degree: int = 3, layers: list[int] | None = None):
        super().__init__()
        self.net = net.eval()
        self.net.use_multimodal = False  # images alone: the prior branches stay loaded, unused
        self.head = head
        self.layers = list(GS_LAYERS if layers is None else layers)
        pairs = len(net.decoder) // 2
        if len(self.layers) != 4 or any(not 0 <= i < pairs for i in self.layers):
            raise ValueError(f"pi3x gs_layers: expected 4 decoder pair indices in [0, {pairs}), got {self.layers}")
        self.sh_degree = int(sh_degree)
        d_sh = (self.sh_degree + 1) ** 2
        mask = torch.ones(d_sh)
        for degree in range(1, self.sh_degree + 1):
            mask[degree ** 2:(degree + 1) ** 2] = 0.1 * 0.25 ** degree
        self.register_buffer("sh_mask", mask, persistent=False)
        self.freeze_backbone()

    @property
    def divisor(self) -> int:
        return PATCH

    def encode(self, images, viewmats=None, Ks=None, near=None, far=None) -> Pi3XFeatures:
        """images [B,V,H,W,3] in [0,1]; optional viewmats [B,V,4,4] (only to align the prediction) -> features."""
        B, V, H, W, _ = images.shape
        x = images.permute(0, 1, 4, 2, 3).float()  # [B, V, 3, H, W]
        kept: dict[int, torch.Tensor] = {}

        def keep(i: int):
            def hook(_module, _inputs, out):
                kept[i] = out.reshape(B, V, -1, out.shape[-1]).float()
            return hook

        blocks = [2 * p + k for p in self.layers for k in (0, 1)]
        handles = [self.net.decoder[i].register_forward_hook(keep(i)) for i in blocks]
        try:
            with torch.no_grad():
                out = self.net(x)
        finally:
            for h in handles:
                h.remove()
        tokens = [torch.cat([kept[2 * p], kept[2 * p + 1]], dim=-1) for p in self.layers]
        pred_c2w = out["camera_poses"].float()
        alignment = fit_batch(pred_c2w, viewmats)
        return Pi3XFeatures(tokens, self.net.patch_start_idx, x, out["points"].float(), out["conf"][..., 0].float(),
                            pred_c2w, intrinsics_from_local_points(out["local_points"].float()), alignment)

    def run_head(self, features: Pi3XFeatures) -> torch.Tensor:
        """-> the Gaussian head's channels [B, V, C, H, W] (C = 8 + 3 d_sh)."""
        return run_dpt_head(self.head, features)

    def decode(self, head_out: torch.Tensor, features: Pi3XFeatures) -> Gaussians:
        """Head channels [B, V, C, H, W] -> Gaussians [B, V*H*W], one per pixel (module docstring)."""
        f = features
        B, V, C, H, W = head_out.shape
        chans = head_out.permute(0, 1, 3, 4, 2).reshape(B, V * H * W, C).float()
        g = gaussians_from_channels(chans, f.points.reshape(B, V * H * W, 3), self.sh_degree, self.sh_mask)
        return align_batch(g, f.alignment)


def load(weights: Path) -> Pi3XAdapter:
    """weights: a folder with Pi3X's model.safetensors (and optionally config.json, module docstring), or a
    .safetensors file (config.json beside it, if any). Strict: every Pi3X parameter present with its
    shape, and nothing else. The head is new (seed HEAD_SEED; the global generator is left untouched)."""
    pi3_modules(), gs_head_class()  # MissingExtraError first, as for every adapter
    st = weights_file(weights, "pi3x")
    cfg_path = st.parent / "config.json"
    config = read_json_object(cfg_path, "the pi3x config") if cfg_path.is_file() else {}
    unknown = sorted(set(config) - {"pi3x", "gs_channels", "gs_layers", "sh_degree"})
    if unknown:
        raise ValueError(f"{cfg_path}: unknown keys {unknown}; expected pi3x, gs_channels, gs_layers, sh_degree")
    sh_degree = int(config.get("sh_degree", 3))
    layers = list(config.get("gs_layers", GS_LAYERS))
    with torch.random.fork_rng(devices=[]):
        try:
            net = build_pi3x(config.get("pi3x"))
            torch.manual_seed(HEAD_SEED)
            head = build_gs_head(net.dec_embed_dim, sh_degree, config.get("gs_channels"))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cfg_path}: not a pi3x config: {e}") from e
    load_state_strict(net, read_safetensors(st), str(st), "Pi3X" + (f" of {cfg_path}" if config else ""))
    return Pi3XAdapter(net, head, sh_degree, layers)
