"""Helpers shared by tests/test_adapters*.py: quaternion / covariance references, the MetaGrad settings
of the head fine-tuning tests, a scene at a pose-free model's predicted cameras, and the check that
fine-tuning changed the head alone."""

from __future__ import annotations

import torch

from foresplat.cameras import Cameras
from foresplat.data.scene import Scene
from foresplat.meta import RuleConfig
from foresplat.models.adapters.finetune import HeadFinetuneConfig
from foresplat.refine import RefineConfig


def quat_to_matrix(q: torch.Tensor, scalar_first: bool = True) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4], (w, x, y, z) or, scalar_first=False, (x, y, z, w)."""
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1) if scalar_first else q[..., [3, 0, 1, 2]].unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                       -1).reshape(*q.shape[:-1], 3, 3)


def covariance(R: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """R diag(scales^2) R^T [..., 3, 3]."""
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def metagrad_config(iterations: int = 2, lr: float = 1e-2, **rule) -> HeadFinetuneConfig:
    """A cheap MetaGrad fine-tuning (K = 2, reference backends); `rule` overrides RuleConfig fields."""
    rule = RuleConfig(**{"name": "metagrad", "lam": 0.0, "k_min": 2, "k_max": 2, "stride": 2, "backend": "reference",
                         "refine": RefineConfig(backend="reference"), **rule})
    return HeadFinetuneConfig(rule=rule, iterations=iterations, lr=lr)


def pose_free_metagrad_config(iterations: int = 2) -> HeadFinetuneConfig:
    """metagrad_config for pose-free models: anchors on the context views (whose cameras are fitted)."""
    return metagrad_config(iterations, lr=1e-3, anchor_views="context")


def scene_at_predicted_cameras(adapter, scale: float = 1.0, far: float = 50.0, size: int = 28) -> Scene:
    """A colour-ramp scene of 4 views whose cameras are the ones the (random) pose-free model predicts for
    the first two (repeated for the other two), their centres times `scale`: the similarity fit of
    those two context views is then well posed, as with trained weights."""
    views = 4
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = torch.stack([xx, yy, 0.5 * (xx + yy)], -1).expand(views, size, size, 3).clone()
    images = images * (0.5 + 0.5 * torch.rand(views, 1, 1, 1, generator=torch.Generator().manual_seed(0)))
    f = adapter.encode(images[None, :2])  # the two context views' cameras, as the model predicts them
    c2w = f.pred_c2w[0].repeat(2, 1, 1)
    c2w[:, :3, 3] *= scale
    return Scene(images, Cameras(torch.linalg.inv(c2w), f.pred_Ks[0].repeat(2, 1, 1), size, size), "ramp",
                 near=0.05, far=far)


def assert_only_head_changed(adapter, before: dict[str, torch.Tensor]) -> None:
    """Every parameter outside adapter.head equals `before` (name -> tensor), and some head parameter changed."""
    head_ids = {id(p) for p in adapter.head_parameters()}
    changed_head = 0
    for name, p in adapter.named_parameters():
        same = torch.equal(p.detach(), before[name])
        if id(p) in head_ids:
            changed_head += not same
        else:
            assert same, f"backbone parameter {name} changed"
    assert changed_head > 0
