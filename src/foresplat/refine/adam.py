"""A functional Adam over `Gaussians`: explicit state plus pure `adam_init` / `adam_update`.

The update is exactly torch.optim.Adam's (no weight decay, no amsgrad), per parameter group:
    m <- beta1 m + (1 - beta1) g            (lerp)
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)      t = updates so far + 1
with the six groups of `AdamLRs` (the `sh` tensor holds two groups: its DC row and the rest).

Two modes:
- plain (differentiable=False): no autograd graph; torch._foreach_* ops, in place on the given
  tensors when `inplace=True` (the fast path of `refine`), else on copies (inputs untouched);
- differentiable (differentiable=True): the update is built from ordinary graph ops, so a loss on
  the result can be differentiated w.r.t. the inputs (including through `grads` when they were
  computed with create_graph=True): the exact unrolled meta-gradient on small problems.
  sqrt(v) is given a zero derivative where v == 0 (a parameter whose gradient is exactly zero), so
  double backward never produces NaN there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from foresplat.gaussians import FIELDS, Gaussians
from foresplat.refine.config import AdamLRs


@dataclass
class AdamState:
    """Adam state of a Gaussians set: `step` updates applied so far and the two moment estimates.

    exp_avg / exp_avg_sq are Gaussians-shaped (same shapes as the parameters); in differentiable
    mode they may be part of an autograd graph.
    """

    step: int
    exp_avg: Gaussians
    exp_avg_sq: Gaussians

    def detach(self) -> "AdamState":
        """The same state without autograd history (tensors shared)."""
        return AdamState(self.step, self.exp_avg.detach(), self.exp_avg_sq.detach())

    def clone(self) -> "AdamState":
        """A detached deep copy."""
        return AdamState(self.step, self.exp_avg.detach().clone(), self.exp_avg_sq.detach().clone())


def adam_init(g: Gaussians) -> AdamState:
    """Zero moments shaped like `g` (any batch shape), step count 0."""
    zeros = g.map(lambda t: torch.zeros_like(t.detach(), memory_format=torch.contiguous_format))
    zeros_sq = g.map(lambda t: torch.zeros_like(t.detach(), memory_format=torch.contiguous_format))
    return AdamState(0, zeros, zeros_sq)


def _group_lists(g: Gaussians, lrs: AdamLRs) -> tuple[list[torch.Tensor], list[float]]:
    """Tensors of the six groups (sh split into views [..., :1, :] and [..., 1:, :]) and their lrs."""
    ts = [g.means, g.quats, g.log_scales, g.opacity_logits]
    lr = [lrs.means, lrs.quats, lrs.log_scales, lrs.opacity_logits]
    if g.sh.shape[-2] > 1:
        ts += [g.sh[..., :1, :], g.sh[..., 1:, :]]
        lr += [lrs.sh_dc, lrs.sh_rest]
    else:
        ts.append(g.sh)
        lr.append(lrs.sh_dc)
    return ts, lr


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """sqrt(v) for v >= 0 with derivative 0 (instead of inf) at v == 0."""
    pos = v > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, v, torch.ones_like(v))), torch.zeros_like(v))


def adam_update(
    g: Gaussians,
    grads: Gaussians,
    state: AdamState,
    lrs: AdamLRs | Callable[[int], AdamLRs],
    step: int | None = None,
    differentiable: bool = False,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-15,
    inplace: bool = False,
) -> tuple[Gaussians, AdamState]:
    """One Adam update of `g` with gradients `grads` (Gaussians-shaped); returns (g_next, state_next).

    lrs: the learning rates of this update, or a schedule `step -> AdamLRs` evaluated at `step`
        (0-based index of this update; defaults to state.step).
    differentiable: build the update from graph ops (see module docstring); `inplace` is ignored.
    inplace: plain mode only: update g's and the state's tensors in place and return them (no
        allocation); otherwise g and state are left untouched.
    Bias correction uses t = state.step + 1, as torch.optim.Adam.
    """
    if step is None:
        step = state.step
    if callable(lrs):
        lrs = lrs(step)
    b1, b2 = betas
    t = state.step + 1
    bc1 = 1.0 - b1 ** t
    bc2_sqrt = math.sqrt(1.0 - b2 ** t)
    if differentiable:
        return _update_graph(g, grads, state, lrs, b1, b2, eps, bc1, bc2_sqrt)
    with torch.no_grad():
        if not inplace:
            g = g.map(lambda x: x.detach().clone())
            state = state.clone()
        params, lr = _group_lists(g, lrs)
        m, _ = _group_lists(state.exp_avg, lrs)
        v, _ = _group_lists(state.exp_avg_sq, lrs)
        gr, _ = _group_lists(grads, lrs)
        # the exact op sequence of torch.optim.Adam's single-tensor path
        torch._foreach_lerp_(m, gr, 1.0 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, gr, gr, 1.0 - b2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, m, denom, [-x / bc1 for x in lr])
    return g, AdamState(t, state.exp_avg, state.exp_avg_sq)


def _update_graph(g: Gaussians, grads: Gaussians, state: AdamState, lrs: AdamLRs,
                  b1: float, b2: float, eps: float, bc1: float, bc2_sqrt: float
                  ) -> tuple[Gaussians, AdamState]:
    """Differentiable update: same formulas as the plain path, as out-of-place graph ops."""
    scalar_lr = {"means": lrs.means, "quats": lrs.quats, "log_scales": lrs.log_scales,
                 "opacity_logits": lrs.opacity_logits}
    new_p, new_m, new_v = [], [], []
    for name, p, gr, m, v in zip(FIELDS, g.tensors(), grads.tensors(), state.exp_avg.tensors(),
                                 state.exp_avg_sq.tensors()):
        m2 = torch.lerp(m, gr, 1.0 - b1)
        v2 = torch.addcmul(v * b2, gr, gr, value=1.0 - b2)
        denom = _safe_sqrt(v2) / bc2_sqrt + eps
        if name == "sh":
            lr = lrs.sh_lr_tensor(p.shape[-2], p) / bc1  # [K, 1], broadcast over [..., N, K, 3]
            p2 = p - lr * (m2 / denom)
        else:
            p2 = torch.addcdiv(p, m2, denom, value=-scalar_lr[name] / bc1)
        new_p.append(p2)
        new_m.append(m2)
        new_v.append(v2)
    return (Gaussians.from_tensors(new_p),
            AdamState(state.step + 1, Gaussians.from_tensors(new_m), Gaussians.from_tensors(new_v)))
