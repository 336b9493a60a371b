"""One interface for every feed-forward model: frozen `encode` -> trainable `head` -> `decode` -> Gaussians.

    adapter = load_adapter("edge", "runs/demo/model")          # or "anysplat", "<dir with weights>"
    f = adapter.encode(images, viewmats, Ks, near, far)        # frozen backbone, no autograd graph
    g = adapter.decode(adapter.run_head(f), f)                 # Gaussians [B, N], raw parameters
    g = adapter(images, viewmats, Ks, near, far)               # the same in one call (a Predictor's signature)

images [B,V,H,W,3] in [0,1]; viewmats [B,V,4,4] OpenCV world-to-camera and Ks [B,V,3,3] in pixels
(None for pose-free models, which then predict in their own frame); near/far [B]. Only `head`'s
parameters are trainable: `encode` runs without gradients, so the training rules (foresplat.meta),
which only see Gaussians, fine-tune the head alone. `encode`'s output may be cached per scene.
Adapters whose model predicts cameras align them to the given ones with a similarity fit
(foresplat.models.adapters.similarity) and keep the fit's residuals in `last_alignment`.

Adapters are registered by name (`register_adapter`); their modules, and the optional packages they
need, are imported only when one is loaded. Weights come only from local paths.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch
from torch import nn

from foresplat._checks import check_tensor
from foresplat.data.scene import Scene
from foresplat.gaussians import Gaussians


class MissingExtraError(ImportError, ValueError):
    """An adapter's optional package is not installed (the message names it and the pip extra).
    Also a ValueError, so the CLI reports it in one line with exit status 2."""


def require(module: str, package: str, extra: str) -> Any:
    """Imports `module` or raises MissingExtraError naming `package` and `pip install 'foresplat[extra]'`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingExtraError(f"this model needs the package {package} (module {e.name!r} is missing): "
                                f"pip install 'foresplat[{extra}]'") from e


def import_pinned(model: str, package: str, version: str, prefix: str, names: Sequence[str], hint: str,
                  prepare: Callable[[], None] | None = None) -> dict[str, ModuleType]:
    """{name: the module `prefix.name`} for each of `names`, from the optional distribution `package`, which
    must be installed at exactly `version`; MissingExtraError naming `model`, the package and `hint` (how
    to install it) otherwise. `prepare` runs after the version check, before the imports."""
    if importlib.util.find_spec(prefix.split(".")[0]) is None:
        raise MissingExtraError(f"model {model!r} needs the package {package}=={version}: {hint}")
    found = importlib.metadata.version(package)
    if found != version:
        raise MissingExtraError(f"model {model!r} needs {package}=={version}, found {package} {found}: {hint}")
    if prepare is not None:
        prepare()
    try:
        return {n: importlib.import_module(f"{prefix}.{n}") for n in names}
    except ModuleNotFoundError as e:
        raise MissingExtraError(f"model {model!r}: {package} needs the module {e.name!r}: {hint}") from e


def weights_file(weights: str | os.PathLike, model: str) -> Path:
    """--weights of `model` -> its .safetensors file: the folder's model.safetensors, or the path itself;
    FileNotFoundError naming what the model expects (its AdapterSpec.weights) when that file is absent."""
    path = Path(weights)
    st = path / "model.safetensors" if path.is_dir() else path
    if not st.is_file():
        spec = _ADAPTERS.get(model)
        expects = spec.weights if spec else "model.safetensors in the folder, or a .safetensors file"
        raise FileNotFoundError(f"--weights: {st} does not exist (model {model!r} expects {expects})")
    return st


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors file; ValueError naming the file when it cannot be read."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{path}: not a readable safetensors file: {e}") from e


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in `path` (`what` it holds, named in errors); ValueError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: invalid JSON or UTF-8
        raise ValueError(f"{path}: cannot read {what}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object ({what}), got {type(data).__name__}")
    return data


def check_views(images: torch.Tensor, viewmats: torch.Tensor | None, Ks: torch.Tensor | None,
                near: torch.Tensor | None, far: torch.Tensor | None, divisor: int, needs_cameras: bool) -> None:
    """Raises ValueError naming the tensor when the inputs do not have the documented shapes / ranges."""
    check_tensor("images", images, (None, None, None, None, 3), min_dims=5)
    if images.dim() != 5:
        raise ValueError(f"images: expected [B, V, H, W, 3], got {list(images.shape)}")
    B, V, H, W, _ = images.shape
    if (viewmats is None) != (Ks is None):
        raise ValueError("viewmats/Ks: give both or neither")
    if viewmats is None and needs_cameras:
        raise ValueError("viewmats/Ks: this model needs the cameras of the views")
    if viewmats is not None:
        check_tensor("viewmats", viewmats, (B, V, 4, 4))
        check_tensor("Ks", Ks, (B, V, 3, 3))
        if viewmats.dim() != 4 or Ks.dim() != 4:
            raise ValueError(f"viewmats/Ks: expected [B,V,4,4] / [B,V,3,3] with B={B}, V={V}, "
                             f"got {list(viewmats.shape)}, {list(Ks.shape)}")
    if (near is None) != (far is None):
        raise ValueError("near/far: give both or neither")
    if near is not None:
        check_tensor("near", near, (B,))
        check_tensor("far", far, (B,))
        if near.dim() != 1 or far.dim() != 1:
            raise ValueError(f"near/far: expected [B] with B={B}, got {list(near.shape)}, {list(far.shape)}")
        if bool((near <= 0).any()) or bool((far <= near).any()):
            raise ValueError(f"near/far: need 0 < near < far, got near={near.tolist()}, far={far.tolist()}")
    if H % divisor or W % divisor:
        raise ValueError(f"images: height and width must be multiples of {divisor} for this model, "
                         f"got {H}x{W} (resize or crop the views)")
    lo, hi = float(images.detach().min()), float(images.detach().max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"images: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str, what: str) -> None:
    """Loads `state` into `model` strictly; ValueError naming `where` with the missing, unexpected and
    wrongly shaped keys. A key may be absent when the model ties it to a present one (shared storage,
    which safetensors' save_model writes once)."""
    expected = model.state_dict()
    alias: dict[int, list[str]] = {}
    for k, v in expected.items():
        if v.numel():
            alias.setdefault(v.untyped_storage().data_ptr(), []).append(k)
    state = dict(state)
    for keys in alias.values():
        present = [k for k in keys if k in state]
        for k in keys:
            if k not in state and present:
                state[k] = state[present[0]]
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(f"{where}: weights do not match {what}: {len(missing)} missing (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(wrong)} of another "
                         f"shape (e.g. {wrong[:3]})")
    model.load_state_dict(state, strict=True)


class ModelAdapter(nn.Module, ABC):
    """A feed-forward model as encode (frozen) -> head (trainable) -> decode (module docstring).

    Subclasses set `head` (every trainable parameter lives there), `name`, `needs_cameras`, and
    implement `divisor`, `encode`, `run_head` and `decode`."""

    name: ClassVar[str] = ""
    needs_cameras: ClassVar[bool] = True
    """False for models that predict the cameras of their input views (pose-free)."""

    head: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self.last_alignment: Any = None
        """The camera fit of the last `forward` (None unless the model predicts cameras)."""

    # ---- the three stages ----------------------------------------------------------------------
    @property
    @abstractmethod
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""

    @abstractmethod
    def encode(self, images: torch.Tensor, viewmats: torch.Tensor | None = None, Ks: torch.Tensor | None = None,
               near: torch.Tensor | None = None, far: torch.Tensor | None = None) -> Any:
        """The frozen part (runs under no_grad): views (module docstring) -> the model's features."""

    @abstractmethod
    def run_head(self, features: Any) -> torch.Tensor:
        """The trainable head on `encode`'s features -> its raw output channels."""

    @abstractmethod
    def decode(self, head_out: torch.Tensor, features: Any) -> Gaussians:
        """Raw head channels + features -> Gaussians [B, N] in foresplat's raw parameterisation."""

    def forward(self, images: torch.Tensor, viewmats: torch.Tensor | None = None, Ks: torch.Tensor | None = None,
                near: torch.Tensor | None = None, far: torch.Tensor | None = None) -> Gaussians:
        """encode -> run_head -> decode: views [B,V,H,W,3] (+ cameras) -> Gaussians [B, N]."""
        check_views(images, viewmats, Ks, near, far, self.divisor, self.needs_cameras)
        with torch.no_grad():
            features = self.encode(images, viewmats, Ks, near, far)
        self.last_alignment = getattr(features, "alignment", None)
        return self.decode(self.run_head(features), features)

    @torch.no_grad()
    def predict(self, scene: Scene, use_cameras: bool = True) -> Gaussians:
        """Unbatched prediction from every view of `scene` (sized to multiples of `divisor`) -> Gaussians [N].

        With use_cameras=False a pose-free model gets the images alone (Gaussians in its own frame)."""
        scene.validate()
        p = next(self.head.parameters())
        s = scene.to(device=p.device, dtype=torch.float32)
        t = lambda x: torch.tensor([float(x)], device=p.device)  # noqa: E731
        cams = (s.cameras.viewmats[None], s.cameras.Ks[None]) if use_cameras or self.needs_cameras else (None, None)
        return self(s.images[None], *cams, t(scene.near), t(scene.far))[0]

    # ---- parameters ----------------------------------------------------------------------------
    def head_parameters(self) -> Iterator[nn.Parameter]:
        """The trainable parameters (those of `head`)."""
        return self.head.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter outside `head` (frozen)."""
        ids = {id(p) for p in self.head.parameters()}
        return (p for p in self.parameters() if id(p) not in ids)

    def freeze_backbone(self) -> "ModelAdapter":
        """Marks every parameter outside `head` as not requiring a gradient (called by subclasses)."""
        for p in self.backbone_parameters():
            p.requires_grad_(False)
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those that require a gradient)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def backbone_digest(self) -> str:
        """sha256 of every parameter outside `head` (names and bytes): equal before and after head-only
        training proves the frozen part unchanged."""
        import hashlib

        h = hashlib.sha256()
        ids = {id(p) for p in self.head.parameters()}
        for name, p in self.named_parameters():
            if id(p) not in ids:
                h.update(name.encode())
                h.update(p.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def save_head(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
        """Writes the head's weights as a foresplat checkpoint (kind "adapter_head", model name in meta)."""
        from foresplat.io import save_checkpoint

        state = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        return save_checkpoint(path, state, {**(meta or {}), "kind": "adapter_head", "model": self.name})

    def load_head(self, path: str | os.PathLike) -> "ModelAdapter":
        """Loads head weights written by `save_head` (strict; ValueError naming the file otherwise)."""
        from foresplat.io import load_checkpoint

        state, meta = load_checkpoint(path, expected_kind="adapter_head")
        if meta.get("model") != self.name:
            raise ValueError(f"{path}: a head of model {meta.get('model')!r}, not of {self.name!r}")
        p = next(self.head.parameters())
        load_state_strict(self.head, {k: v.to(p.device) for k, v in state.items()}, str(path),
                          f"the {self.name} head")
        return self


# ---- registry ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdapterSpec:
    """A registered model: `loader` is "module:function", function(weights: Path) -> ModelAdapter."""

    name: str
    loader: str
    extra: str | None
    """pip extra of foresplat holding its optional packages (None: no extra needed)."""
    weights: str
    """What --weights must point at (one line, shown in errors and --help)."""


_ADAPTERS: dict[str, AdapterSpec] = {}


def register_adapter(spec: AdapterSpec) -> AdapterSpec:
    """Adds (or replaces) a named adapter."""
    _ADAPTERS[spec.name] = spec
    return spec


def registered_adapters() -> dict[str, AdapterSpec]:
    """name -> AdapterSpec of every registered adapter (nothing is imported)."""
    return dict(_ADAPTERS)


def load_adapter(name: str, weights: str | os.PathLike, head: str | os.PathLike | None = None) -> ModelAdapter:
    """The named adapter with its weights from a local path (strict; nothing is downloaded), and,
    given `head`, the head weights of a fine-tune (`ModelAdapter.save_head`) in place of the model's.

    Raises ValueError for an unknown name or mismatched weights, FileNotFoundError for a missing
    path, MissingExtraError when the model's optional package is not installed."""
    if name not in _ADAPTERS:
        raise ValueError(f"--model: unknown model {name!r}; available: {sorted(_ADAPTERS)}")
    spec = _ADAPTERS[name]
    path = Path(weights)
    shipped = name == "edge" and str(weights) == "default"  # the predictor shipped with the package
    if not shipped and not path.exists() and not Path(f"{path}.safetensors").exists():
        raise FileNotFoundError(f"--weights: {path} does not exist (model {name!r} expects {spec.weights})")
    module, fn = spec.loader.split(":")
    loader: Callable[[Path], ModelAdapter] = getattr(importlib.import_module(module), fn)
    adapter = loader(path)
    return adapter.load_head(head) if head is not None else adapter


def load_feedforward(spec: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Any feed-forward model from one string, for commands that take checkpoints (e.g. eval's --ckpt):
    "NAME:WEIGHTS" (a registered adapter), a head checkpoint of `train --model` (its JSON names the
    model and its weights), or a Predictor checkpoint. The result has `predict(scene)` and `divisor`."""
    from foresplat.io import checkpoint_paths
    from foresplat.models.predictor import Predictor

    text = str(spec)
    name, sep, rest = text.partition(":")
    if sep and name in _ADAPTERS and rest:
        return load_adapter(name, rest).to(device).eval()
    json_path = checkpoint_paths(text)[1]
    if json_path.is_file():
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if isinstance(meta, dict) and meta.get("kind") == "adapter_head":
            if meta.get("model") not in _ADAPTERS or not meta.get("weights"):
                raise ValueError(f"{json_path}: a head checkpoint without a known model and weights path")
            return load_adapter(meta["model"], meta["weights"], head=text).to(device).eval()
    return Predictor.from_checkpoint(text, map_location=device).eval()


register_adapter(AdapterSpec("edge", "foresplat.models.adapters.edge:load", None,
                             "a foresplat predictor checkpoint (stem, .json or .safetensors), or default"))
register_adapter(AdapterSpec("anysplat", "foresplat.models.adapters.anysplat:load", "anysplat",
                             "a folder with model.safetensors (+ config.json), or a .safetensors file"))
register_adapter(AdapterSpec("da3", "foresplat.models.adapters.da3:load", "da3",
                             "a folder with model.safetensors and config.json (Depth Anything 3 with a 3DGS head)"))
register_adapter(AdapterSpec("vggt", "foresplat.models.adapters.vggt:load", "anysplat",
                             "a folder with VGGT's model.safetensors (+ config.json), or a .safetensors file; "
                             "a new Gaussian head, fine-tuned with --head"))
register_adapter(AdapterSpec("pi3x", "foresplat.models.adapters.pi3x:load", "anysplat",
                             "a folder with Pi3X's model.safetensors (+ config.json), or a .safetensors file; "
                             "needs pi3 installed from a clone; a new Gaussian head, fine-tuned with --head"))
