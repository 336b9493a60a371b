"""`Gaussians`: the raw, optimizable parameters of a 3D Gaussian splat.

Stored in the space the refiner optimizes (and the predictor head outputs):
    means           [..., N, 3]   world positions
    quats           [..., N, 4]   rotation quaternions (w, x, y, z), NOT normalized
    log_scales      [..., N, 3]   log of the per-axis standard deviations
    opacity_logits  [..., N]      logit of the opacity
    sh              [..., N, K, 3] SH colour coefficients, K = (d+1)^2 for degree d in 0..3;
                                  sh[..., 0, :] is the DC term. colour = max(SH(dir) + 0.5, 0) as in 3DGS.
An optional leading batch dimension (`...`) holds several scenes of equal N.
The activations (normalize, exp, sigmoid) live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Iterator

import torch

from foresplat._checks import check_tensor

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")
SH_DEGREE_OF_K = {1: 0, 4: 1, 9: 2, 16: 3}
SH_C0 = 0.28209479177387814  # Y_0^0


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0,1] -> DC SH coefficient (inverse of colour = C0 * dc + 0.5)."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """DC SH coefficient -> colour (before clamping)."""
    return dc * SH_C0 + 0.5


@dataclass
class Gaussians:
    """Raw Gaussian parameters (see module docstring for shapes and conventions)."""

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh: torch.Tensor

    # ---- shape information -------------------------------------------------------------------
    @property
    def num(self) -> int:
        """Number of Gaussians N."""
        return self.means.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        """Leading batch dims (empty for a single scene)."""
        return self.means.shape[:-2]

    @property
    def sh_degree(self) -> int:
        """SH degree d, from K = (d+1)^2."""
        return SH_DEGREE_OF_K[self.sh.shape[-2]]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    # ---- activations (the one place they are applied) ----------------------------------------
    def scales(self) -> torch.Tensor:
        """Standard deviations [..., N, 3] = exp(log_scales)."""
        return torch.exp(self.log_scales)

    def opacities(self) -> torch.Tensor:
        """Opacities [..., N] in (0, 1) = sigmoid(opacity_logits)."""
        return torch.sigmoid(self.opacity_logits)

    def unit_quats(self) -> torch.Tensor:
        """Normalized quaternions [..., N, 4] (w, x, y, z)."""
        return torch.nn.functional.normalize(self.quats, dim=-1)

    # ---- construction and validation ---------------------------------------------------------
    def validate(self, name: str = "gaussians") -> "Gaussians":
        """Checks shapes, dtypes and finiteness; raises ValueError/TypeError naming the field."""
        check_tensor(f"{name}.means", self.means, (None, 3))
        lead = self.means.shape[:-1]  # [..., N]
        check_tensor(f"{name}.quats", self.quats, (None, 4))
        check_tensor(f"{name}.log_scales", self.log_scales, (None, 3))
        check_tensor(f"{name}.opacity_logits", self.opacity_logits, (None,))
        check_tensor(f"{name}.sh", self.sh, (None, None, 3))
        for field, t, nd in (("quats", self.quats, 1), ("log_scales", self.log_scales, 1),
                             ("opacity_logits", self.opacity_logits, 0), ("sh", self.sh, 2)):
            got = t.shape[: t.dim() - nd]
            if got != lead:
                raise ValueError(
                    f"{name}.{field}: leading shape {list(got)} does not match means' {list(lead)}"
                )
        if self.sh.shape[-2] not in SH_DEGREE_OF_K:
            raise ValueError(
                f"{name}.sh: expected (d+1)^2 in (1, 4, 9, 16) coefficients, got {self.sh.shape[-2]}"
            )
        if self.num > 0 and bool((self.quats.detach().norm(dim=-1) < 1e-12).any()):
            raise ValueError(f"{name}.quats: contains a zero quaternion (cannot be normalized)")
        return self

    @staticmethod
    def from_activated(
        means: torch.Tensor,
        quats: torch.Tensor,
        scales: torch.Tensor,
        opacities: torch.Tensor,
        colors: torch.Tensor,
        sh_degree: int = 0,
    ) -> "Gaussians":
        """Builds raw parameters from activated values: scales > 0, opacities in (0,1), RGB colours in [0,1].

        colors [..., N, 3] become the DC term; higher SH bands (up to `sh_degree`) start at zero.
        """
        k = (sh_degree + 1) ** 2
        sh = torch.zeros(*colors.shape[:-1], k, 3, dtype=colors.dtype, device=colors.device)
        sh[..., 0, :] = rgb_to_sh_dc(colors)
        op = opacities.clamp(1e-6, 1 - 1e-6)
        return Gaussians(means, quats, torch.log(scales), torch.log(op) - torch.log1p(-op), sh)

    # ---- functional helpers -------------------------------------------------------------------
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The five tensors in FIELDS order."""
        return tuple(getattr(self, f) for f in FIELDS)

    @staticmethod
    def from_tensors(tensors: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> "Gaussians":
        """Inverse of `tensors()`."""
        return Gaussians(*tensors)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for f in FIELDS:
            yield f, getattr(self, f)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Gaussians":
        """Applies `fn` to every tensor and returns a new Gaussians."""
        return Gaussians(*(fn(t) for t in self.tensors()))

    def detach(self) -> "Gaussians":
        return self.map(lambda t: t.detach())

    def clone(self) -> "Gaussians":
        return self.map(lambda t: t.clone())

    def to(self, *args, **kwargs) -> "Gaussians":
        return self.map(lambda t: t.to(*args, **kwargs))

    def requires_grad_(self, flag: bool = True) -> "Gaussians":
        for t in self.tensors():
            t.requires_grad_(flag)
        return self

    def replace(self, **changes: torch.Tensor) -> "Gaussians":
        return replace(self, **changes)

    def select(self, index: torch.Tensor) -> "Gaussians":
        """Subset of Gaussians along N (bool mask [N] or index tensor); unbatched only."""
        if self.batch_shape:
            raise ValueError("Gaussians.select: expects an unbatched set, got batch shape "
                             f"{list(self.batch_shape)}")
        return self.map(lambda t: t[index])

    def __getitem__(self, b: int) -> "Gaussians":
        """Scene `b` of a batched set."""
        if not self.batch_shape:
            raise IndexError("Gaussians[...] indexes the batch dimension, but this set is unbatched")
        return self.map(lambda t: t[b])

    @staticmethod
    def stack(items: list["Gaussians"]) -> "Gaussians":
        """Stacks unbatched sets of equal N and SH degree into a batch [B, N, ...]."""
        return Gaussians(*(torch.stack(ts) for ts in zip(*(g.tensors() for g in items))))

    @staticmethod
    def cat(items: list["Gaussians"]) -> "Gaussians":
        """Concatenates sets along N (same SH degree)."""
        return Gaussians(*(torch.cat(ts, dim=-(1 if f == "opacity_logits" else 2 if f != "sh" else 3))
                           for f, ts in zip(FIELDS, zip(*(g.tensors() for g in items)))))

    def __repr__(self) -> str:
        return (f"Gaussians(N={self.num}, batch={list(self.batch_shape)}, sh_degree={self.sh_degree}, "
                f"dtype={self.dtype}, device={self.device})")


assert [f.name for f in fields(Gaussians)] == list(FIELDS)
