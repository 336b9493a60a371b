"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features") from a LOCAL weight file.

Nothing is downloaded and no weights ship with foresplat: LPIPS is computed only when the user
points `--lpips-weights` at a file; otherwise the evaluation says "LPIPS: not computed (no weights)".

Weight file: a torch state_dict saved with `torch.save` (.pt/.pth) or a .safetensors file holding
  * the backbone convolutions, AlexNet or VGG16 `features`, under any of the key layouts
        `net.slice{k}.{i}.weight|bias`   (the state_dict of a full `lpips.LPIPS` module)
        `features.{i}.weight|bias`       (torchvision's AlexNet / VGG16 `features`)
        `net.{i}.weight|bias`
    where i is the layer's index in torchvision's `features` Sequential;
  * the five linear heads, `lin{k}.model.1.weight` or `lin{k}.weight`, each [1, C_k, 1, 1], k = 0..4;
  * optionally `scaling_layer.shift` / `scaling_layer.scale` [1, 3, 1, 1] (the LPIPS defaults otherwise).
The backbone (alex or vgg) is recognised from the convolution indices and shapes.

Distance: images in [0,1] -> [-1,1] -> (x - shift) / scale -> backbone; at five ReLU taps the
features are unit-normalised over channels, squared differences are weighted by the linear head,
averaged over space and summed over taps. Lower is better; LPIPS(x, x) = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from foresplat.evaluate.metrics import _pair

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


@dataclass(frozen=True)
class _Arch:
    """A backbone as torchvision lays out its `features`: conv specs, pools and the five taps."""

    name: str
    convs: dict[int, tuple[int, int, int, int, int]]  # index -> (in, out, kernel, stride, padding)
    pools: dict[int, tuple[int, int]]  # index -> (kernel, stride)
    taps: tuple[int, ...]  # indices of the ReLUs whose outputs are compared
    min_side: int  # smallest image side the pools accept


_ALEX = _Arch(
    "alex",
    convs={0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
           8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)},
    pools={2: (3, 2), 5: (3, 2)},
    taps=(1, 4, 7, 9, 11),
    min_side=31,
)
_VGG_CH = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
_VGG_IDX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_VGG = _Arch(
    "vgg",
    convs={i: (ci, co, 3, 1, 1) for i, (ci, co) in zip(_VGG_IDX, _VGG_CH)},
    pools={4: (2, 2), 9: (2, 2), 16: (2, 2), 23: (2, 2)},
    taps=(3, 8, 15, 22, 29),
    min_side=16,
)
ARCHS = {"alex": _ALEX, "vgg": _VGG}


def _normalize_keys(state: dict[str, torch.Tensor]) -> tuple[dict[int, dict[str, torch.Tensor]],
                                                            dict[int, torch.Tensor],
                                                            dict[str, torch.Tensor]]:
    """Splits a state_dict into backbone layers {index: {weight, bias}}, heads {k: w} and scaling buffers."""
    convs: dict[int, dict[str, torch.Tensor]] = {}
    lins: dict[int, torch.Tensor] = {}
    scaling: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "scaling_layer" and len(parts) == 2:
            scaling[parts[1]] = value
        elif parts[0].startswith("lin") and parts[0][3:].isdigit() and parts[-1] == "weight":
            lins[int(parts[0][3:])] = value
        elif parts[-1] in ("weight", "bias") and parts[0] in ("net", "features"):
            rest = parts[1:-1]
            if rest and rest[0].startswith("slice"):
                rest = rest[1:]
            if len(rest) != 1 or not rest[0].isdigit():
                raise ValueError(f"LPIPS weights: unexpected backbone key {key!r}")
            convs.setdefault(int(rest[0]), {})[parts[-1]] = value
    return convs, lins, scaling


class LPIPS(torch.nn.Module):
    """LPIPS distance with an AlexNet or VGG16 backbone; build it with `load_lpips(path)`."""

    def __init__(self, arch: str, convs: dict[int, dict[str, torch.Tensor]], lins: dict[int, torch.Tensor],
                 shift: torch.Tensor | None = None, scale: torch.Tensor | None = None):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"LPIPS: unknown backbone {arch!r} (expected one of {sorted(ARCHS)})")
        self.arch = ARCHS[arch]
        self.weights = torch.nn.ParameterDict()
        for i, (cin, cout, k, _, _) in self.arch.convs.items():
            layer = convs.get(i, {})
            for part, shape in (("weight", (cout, cin, k, k)), ("bias", (cout,))):
                t = layer.get(part)
                if t is None:
                    raise ValueError(f"LPIPS weights ({arch}): missing backbone layer {i} {part}")
                if tuple(t.shape) != shape:
                    raise ValueError(f"LPIPS weights ({arch}): layer {i} {part} has shape {list(t.shape)}, "
                                     f"expected {list(shape)}")
                self.weights[f"c{i}_{part}"] = torch.nn.Parameter(t.detach().float().clone(), requires_grad=False)
        tap_channels = [self._channels_at(tap) for tap in self.arch.taps]
        for k, ch in enumerate(tap_channels):
            w = lins.get(k)
            if w is None:
                raise ValueError(f"LPIPS weights ({arch}): missing linear head lin{k}")
            if w.numel() != ch:
                raise ValueError(f"LPIPS weights ({arch}): lin{k} has {w.numel()} weights, expected {ch}")
            self.weights[f"lin{k}"] = torch.nn.Parameter(w.detach().float().reshape(1, ch, 1, 1).clone(),
                                                         requires_grad=False)
        sh = torch.tensor(LPIPS_SHIFT) if shift is None else shift.detach().float().reshape(3)
        sc = torch.tensor(LPIPS_SCALE) if scale is None else scale.detach().float().reshape(3)
        self.register_buffer("shift", sh.reshape(1, 3, 1, 1).clone())
        self.register_buffer("scale", sc.reshape(1, 3, 1, 1).clone())

    def _channels_at(self, tap: int) -> int:
        return self.arch.convs[max(i for i in self.arch.convs if i < tap)][1]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone activations at the five taps for x [B, 3, H, W] already scaled to LPIPS input space."""
        out = []
        last = max(self.arch.taps)
        for i in range(last + 1):
            if i in self.arch.convs:
                _, _, _, stride, pad = self.arch.convs[i]
                x = F.conv2d(x, self.weights[f"c{i}_weight"], self.weights[f"c{i}_bias"], stride=stride, padding=pad)
            elif i in self.arch.pools:
                k, s = self.arch.pools[i]
                x = F.max_pool2d(x, kernel_size=k, stride=s)
            else:
                x = F.relu(x)
            if i in self.arch.taps:
                out.append(x)
        return out

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LPIPS per view [C] for images [C, H, W, 3] (or [H, W, 3]) in [0, 1]."""
        p, t = _pair(pred, target)
        if min(p.shape[1], p.shape[2]) < self.arch.min_side:
            raise ValueError(f"LPIPS ({self.arch.name}): images {p.shape[2]}x{p.shape[1]} are smaller than "
                             f"the backbone's minimum side {self.arch.min_side}")
        dev = self.shift.device
        x = (p.permute(0, 3, 1, 2).to(dev) * 2 - 1 - self.shift) / self.scale  # [C, 3, H, W]
        y = (t.permute(0, 3, 1, 2).to(dev) * 2 - 1 - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=dev)
        for k, (fx, fy) in enumerate(zip(self.features(x), self.features(y))):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # [C, ch, h, w]
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = ((nx - ny) ** 2 * self.weights[f"lin{k}"]).sum(1)  # [C, h, w]
            total = total + d.mean(dim=(1, 2))
        return total.cpu()


def _detect_arch(convs: dict[int, dict[str, torch.Tensor]]) -> str:
    idx = set(convs)
    for name, arch in ARCHS.items():
        if set(arch.convs) == idx:
            return name
    raise ValueError(f"LPIPS weights: backbone layer indices {sorted(idx)} match neither AlexNet "
                     f"{sorted(_ALEX.convs)} nor VGG16 {sorted(_VGG.convs)} `features`")


def load_lpips(path: str | Path, device: str | torch.device = "cpu") -> LPIPS:
    """Builds an `LPIPS` metric from a local weight file (layout in the module docstring).

    Raises FileNotFoundError / ValueError naming the file and what is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights: no file at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable file: report which and why
        raise ValueError(f"LPIPS weights: cannot read {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"LPIPS weights: {path} does not hold a state_dict of tensors")
    try:
        convs, lins, scaling = _normalize_keys(state)
        arch = _detect_arch(convs)
        model = LPIPS(arch, convs, lins, scaling.get("shift"), scaling.get("scale"))
    except ValueError as exc:
        raise ValueError(f"{exc} (file {path})") from exc
    return model.to(device).eval()
