"""The `Backbone` interface and its registry.

A backbone maps posed context views to per-pixel depth, confidence and features at the
prediction resolution (H / prediction_stride, W / prediction_stride). Adding one is one file:

    @dataclass
    class MyConfig(BackboneConfig):
        name: Literal["mine"] = "mine"
        ...

    @register_backbone("mine", MyConfig)
    class MyBackbone(Backbone[MyConfig]):
        def forward(self, images, viewmats, Ks, near, far) -> BackboneOutput: ...

and `build_backbone(MyConfig())` builds it. The Gaussian head is written once against
`BackboneOutput` and `Backbone.out_channels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import torch
from torch import nn

from foresplat.models.dictconfig import config_from_dict


@dataclass
class BackboneConfig:
    """Fields shared by every backbone config (subclasses add `name: Literal[...]` and their own)."""

    prediction_stride: int = 2
    """Output resolution = input / prediction_stride (1 = one Gaussian per input pixel and view)."""

    def validate(self) -> "BackboneConfig":
        """Raises ValueError naming the field when a setting is impossible."""
        if self.prediction_stride not in (1, 2, 4):
            raise ValueError(f"{type(self).__name__}.prediction_stride: expected 1, 2 or 4, "
                             f"got {self.prediction_stride}")
        return self


@dataclass
class BackboneOutput:
    """What a backbone returns, at the prediction resolution h = H / s, w = W / s:

    depth       [B, V, h, w]     camera z-depth (OpenCV) of each prediction pixel, > 0
    confidence  [B, V, h, w]     in [0, 1] (e.g. the peak of the depth distribution)
    features    [B, V, C, h, w]  C = Backbone.out_channels
    """

    depth: torch.Tensor
    confidence: torch.Tensor
    features: torch.Tensor


C = TypeVar("C", bound=BackboneConfig)


class Backbone(nn.Module, Generic[C]):
    """Base class: posed images -> BackboneOutput. Subclasses set `out_channels` and `divisor`."""

    out_channels: int
    """Feature channels C of BackboneOutput.features."""
    divisor: int
    """Input height and width must be multiples of this."""

    def __init__(self, config: C):
        super().__init__()
        self.config = config.validate()

    def forward(self, images: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                near: torch.Tensor, far: torch.Tensor) -> BackboneOutput:
        """images [B,V,H,W,3] in [0,1], viewmats [B,V,4,4] (OpenCV w2c), Ks [B,V,3,3] (pixels),
        near/far [B] -> BackboneOutput at H/s x W/s, s = config.prediction_stride."""
        raise NotImplementedError


_REGISTRY: dict[str, tuple[type[BackboneConfig], type[Backbone]]] = {}


def register_backbone(name: str, config_cls: type[BackboneConfig]) -> Callable[[type[Backbone]], type[Backbone]]:
    """Class decorator: registers a Backbone subclass under `name` with its config class."""

    def deco(cls: type[Backbone]) -> type[Backbone]:
        if name in _REGISTRY and _REGISTRY[name][1] is not cls:
            raise ValueError(f"register_backbone: a backbone named {name!r} is already registered "
                             f"({_REGISTRY[name][1].__qualname__})")
        default_name = getattr(config_cls, "name", None)
        if default_name != name:
            raise ValueError(f"register_backbone: {config_cls.__name__}.name defaults to "
                             f"{default_name!r}, expected {name!r}")
        _REGISTRY[name] = (config_cls, cls)
        return cls

    return deco


def registered_backbones() -> list[str]:
    """Names of the registered backbones."""
    return sorted(_REGISTRY)


def build_backbone(config: BackboneConfig) -> Backbone:
    """The backbone named by `config.name`, built from `config` (validated first)."""
    name = getattr(config, "name", None)
    if name not in _REGISTRY:
        raise ValueError(f"build_backbone: unknown backbone {name!r}; registered: {registered_backbones()}")
    config_cls, cls = _REGISTRY[name]
    if not isinstance(config, config_cls):
        raise TypeError(f"build_backbone: backbone {name!r} needs a {config_cls.__name__}, "
                        f"got {type(config).__name__}")
    return cls(config)


def backbone_config_from_dict(data: Any, where: str = "backbone") -> BackboneConfig:
    """A backbone config from its dict form, dispatched on data['name'] (strict, see dictconfig)."""
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError(f"{where}: expected a mapping with a 'name' field, got {data!r}")
    if data["name"] not in _REGISTRY:
        raise ValueError(f"{where}.name: unknown backbone {data['name']!r}; registered: {registered_backbones()}")
    return config_from_dict(_REGISTRY[data["name"]][0], data, where).validate()
