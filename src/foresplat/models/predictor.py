"""`Predictor` = Backbone + GaussianHead: posed context views -> Gaussians G0 (raw parameters).

    model = Predictor(PredictorConfig.preset("edge-s"))
    g = model(images [B,V,H,W,3], viewmats [B,V,4,4], Ks [B,V,3,3], near [B], far [B])   # Gaussians [B, N]
    g0 = model.predict(scene)                                                              # Gaussians [N]
    model.save("runs/x/model", step=100); Predictor.from_checkpoint("runs/x/model")

N = V * (H / s) * (W / s) for prediction stride s. Checkpoints are foresplat.io checkpoints with
meta {"kind": "predictor", "predictor_schema": PREDICTOR_SCHEMA, "config": PredictorConfig dict,
"step": int}; keys containing "/" (training state written by foresplat.train) are ignored here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from foresplat._checks import check_tensor
from foresplat.data.normalize import SceneNormalization
from foresplat.data.scene import Scene
from foresplat.gaussians import Gaussians
from foresplat.models.backbone import Backbone, backbone_config_from_dict, build_backbone
from foresplat.models.dictconfig import config_from_dict, config_to_dict
from foresplat.models.edge import EDGE_PRESETS, EdgeConfig
from foresplat.models.head import GaussianHead, HeadConfig

PREDICTOR_SCHEMA = 1
"""Version of the predictor checkpoint layout (bump when parameter names or meta change)."""

AnyBackboneConfig = EdgeConfig
"""The union of the registered backbone configs (one today), as tyro sees PredictorConfig.backbone."""


@dataclass
class PredictorConfig:
    """A predictor: which backbone (and its settings) and the Gaussian head's settings."""

    backbone: AnyBackboneConfig = field(default_factory=lambda: replace(EDGE_PRESETS["edge-s"]))
    """Backbone config; its `name` selects the registered backbone."""
    head: HeadConfig = field(default_factory=HeadConfig)
    """Gaussian head config."""

    def validate(self) -> "PredictorConfig":
        """Validates both parts; raises ValueError naming the field."""
        self.backbone.validate()
        self.head.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML types)."""
        return config_to_dict(self)

    @staticmethod
    def from_dict(data: Any, where: str = "PredictorConfig") -> "PredictorConfig":
        """Inverse of to_dict (strict: unknown fields or backbones raise ValueError naming them)."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"backbone", "head"})
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known fields: ['backbone', 'head']")
        backbone = backbone_config_from_dict(data.get("backbone", {"name": "edge"}), f"{where}.backbone")
        head = config_from_dict(HeadConfig, data.get("head", {}), f"{where}.head")
        return PredictorConfig(backbone=backbone, head=head).validate()

    @staticmethod
    def preset(name: str) -> "PredictorConfig":
        """A fresh copy of a named preset (see PREDICTOR_PRESETS)."""
        if name not in PREDICTOR_PRESETS:
            raise ValueError(f"PredictorConfig.preset: unknown preset {name!r}; "
                             f"available: {sorted(PREDICTOR_PRESETS)}")
        return PredictorConfig.from_dict(PREDICTOR_PRESETS[name].to_dict())


PREDICTOR_PRESETS: dict[str, PredictorConfig] = {
    "edge-t": PredictorConfig(EDGE_PRESETS["edge-t"], HeadConfig(hidden_channels=24, num_blocks=1)),
    "edge-s": PredictorConfig(EDGE_PRESETS["edge-s"], HeadConfig(hidden_channels=64, num_blocks=1)),
    "edge-m": PredictorConfig(EDGE_PRESETS["edge-m"], HeadConfig(hidden_channels=64, num_blocks=1)),
    "edge-l": PredictorConfig(EDGE_PRESETS["edge-l"], HeadConfig(hidden_channels=96, num_blocks=2)),
    "edge-r": PredictorConfig(EDGE_PRESETS["edge-r"], HeadConfig(hidden_channels=48, num_blocks=1, opacity_init=0.2)),
}
"""Named predictor sizes: edge-t (tests), edge-s ~1M, edge-m ~3M, edge-l ~8M parameters; edge-r (real
captures: photometric + learned cost volume at stride 2, 48 depth planes, low initial opacity)."""


class Predictor(nn.Module):
    """Backbone + GaussianHead (module docstring). `freeze_backbone()` for head-only training."""

    def __init__(self, config: PredictorConfig | None = None):
        super().__init__()
        self.config = (config or PredictorConfig()).validate()
        self.backbone: Backbone = build_backbone(self.config.backbone)
        self.head = GaussianHead(self.config.head, self.backbone.out_channels)

    # ---- training switches ---------------------------------------------------------------------
    def freeze_backbone(self) -> "Predictor":
        """Stops gradients to the backbone (it then runs without an autograd graph)."""
        self.backbone.requires_grad_(False)
        return self

    def unfreeze_backbone(self) -> "Predictor":
        """Makes the backbone trainable again."""
        self.backbone.requires_grad_(True)
        return self

    @property
    def backbone_trainable(self) -> bool:
        """True when any backbone parameter requires a gradient."""
        return any(p.requires_grad for p in self.backbone.parameters())

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those training can change: those that require a gradient,
        less the last head layer's rows that GaussianHead.restrict_training holds fixed)."""
        n = sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
        if trainable_only and self.head.restricted_to:
            fixed = int((~self.head.output_rows(self.head.restricted_to)).sum())
            n -= fixed * sum(p[0].numel() for p in self.head.out.parameters())
        return n

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return self.backbone.divisor

    @property
    def prediction_stride(self) -> int:
        """One Gaussian per prediction_stride x prediction_stride input pixels per view."""
        return self.config.backbone.prediction_stride

    # ---- inference -----------------------------------------------------------------------------
    def _check_inputs(self, images, viewmats, Ks, near, far) -> None:
        check_tensor("images", images, (None, None, None, None, 3), min_dims=5)
        if images.dim() != 5:
            raise ValueError(f"images: expected [B, V, H, W, 3], got {list(images.shape)}")
        B, V, H, W, _ = images.shape
        check_tensor("viewmats", viewmats, (B, V, 4, 4))
        check_tensor("Ks", Ks, (B, V, 3, 3))
        check_tensor("near", near, (B,))
        check_tensor("far", far, (B,))
        if viewmats.dim() != 4 or Ks.dim() != 4 or near.dim() != 1 or far.dim() != 1:
            raise ValueError(f"Predictor: expected viewmats [B,V,4,4], Ks [B,V,3,3], near/far [B] with "
                             f"B={B}, V={V}; got {list(viewmats.shape)}, {list(Ks.shape)}, "
                             f"{list(near.shape)}, {list(far.shape)}")
        if H % self.divisor or W % self.divisor:
            raise ValueError(f"images: height and width must be multiples of {self.divisor} for this "
                             f"backbone, got {H}x{W} (resize or crop the views)")
        if bool((near <= 0).any()) or bool((far <= near).any()):
            raise ValueError(f"near/far: need 0 < near < far, got near={near.tolist()}, far={far.tolist()}")
        lo, hi = float(images.detach().min()), float(images.detach().max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"images: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")

    def forward(self, images: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                near: torch.Tensor, far: torch.Tensor) -> Gaussians:
        """images [B,V,H,W,3] in [0,1], viewmats [B,V,4,4] OpenCV w2c, Ks [B,V,3,3] pixels, near/far [B]
        -> Gaussians [B, N], N = V * H/s * W/s (s = prediction stride), raw parameters."""
        self._check_inputs(images, viewmats, Ks, near, far)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_trainable):
            feats = self.backbone(images, viewmats, Ks, near, far)
        return self.head(feats, images, viewmats, Ks, near, far)

    @torch.no_grad()
    def predict(self, scene: Scene) -> Gaussians:
        """Unbatched prediction from every view of `scene` (already resized to multiples of `divisor`)
        -> Gaussians [N] in the scene's world frame, on the model's device.

        The network runs in the scene's normalised frame (foresplat.data.normalize): the result does
        not depend on the units or the origin the poses were written in."""
        scene.validate()
        norm = SceneNormalization.of(scene)
        dev = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        s = norm.apply(scene).to(device=dev, dtype=dtype)
        t = lambda x: torch.tensor([float(x)], device=dev, dtype=dtype)  # noqa: E731
        g = self(s.images[None], s.cameras.viewmats[None], s.cameras.Ks[None], t(s.near), t(s.far))
        return norm.to_world(g[0])

    # ---- checkpoints ---------------------------------------------------------------------------
    def checkpoint_meta(self, step: int = 0) -> dict[str, Any]:
        """The meta dict written with this model's weights."""
        return {"kind": "predictor", "predictor_schema": PREDICTOR_SCHEMA,
                "config": self.config.to_dict(), "step": int(step)}

    def save(self, path: str | os.PathLike, step: int = 0, extra_meta: dict[str, Any] | None = None) -> None:
        """Writes `<path>.safetensors` + `<path>.json` atomically (foresplat.io.save_checkpoint)."""
        from foresplat.io import save_checkpoint

        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_checkpoint(path, state, {**self.checkpoint_meta(step), **(extra_meta or {})})

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "Predictor":
        """Rebuilds a predictor from a checkpoint written by `save` or by foresplat.train.

        `path` "default" names the predictor shipped with the package (foresplat.models.pretrained).
        Raises ValueError naming the file when it is not a predictor checkpoint of this schema or
        its weights do not fit the recorded config."""
        from foresplat.io import load_checkpoint
        from foresplat.models.pretrained import resolve_checkpoint

        path = resolve_checkpoint(path)
        state, meta = load_checkpoint(path)
        config = config_from_checkpoint_meta(meta, str(path))
        weights = {k: v for k, v in state.items() if "/" not in k}
        check_config_fits_weights(cls, config, weights, str(path))  # before allocating the model
        model = cls(config)
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not match the predictor config stored with them: {e}") from e
        return model.to(map_location)


def check_config_fits_weights(cls, config: PredictorConfig, weights: dict[str, torch.Tensor], where: str) -> None:
    """Builds the model of `config` on the meta device (no memory) and raises ValueError naming
    `where` when its parameter names/shapes differ from `weights`: an edited or corrupt config
    (e.g. huge channel counts) is refused before the real model is allocated."""
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"{where}: the predictor config stored with the weights cannot be built ({e})") from e
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if shapes != got:
        missing = sorted(set(shapes) - set(got))[:3]
        unexpected = sorted(set(got) - set(shapes))[:3]
        differ = [f"{k}: config {shapes[k]} vs weights {got[k]}" for k in sorted(set(shapes) & set(got))
                  if shapes[k] != got[k]][:3]
        raise ValueError(f"{where}: the predictor config does not fit the stored weights (missing {missing}, "
                         f"unexpected {unexpected}, shapes {differ}); the .json config was edited or is corrupt")


def config_from_checkpoint_meta(meta: dict[str, Any], where: str) -> PredictorConfig:
    """PredictorConfig from a checkpoint's meta; ValueError naming `where` for another kind or schema."""
    kind = meta.get("kind")
    if kind != "predictor":
        raise ValueError(f"{where}: checkpoint kind is {kind!r}, expected 'predictor'")
    schema = meta.get("predictor_schema")
    if schema != PREDICTOR_SCHEMA:
        raise ValueError(f"{where}: predictor checkpoint schema {schema!r}, this foresplat reads "
                         f"schema {PREDICTOR_SCHEMA}")
    if "config" not in meta:
        raise ValueError(f"{where}: checkpoint meta has no 'config'")
    try:
        return PredictorConfig.from_dict(meta["config"], f"{where}: config")
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from e
