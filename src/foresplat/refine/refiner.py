"""The refiner R_K: K Adam steps on a fixed set of Gaussians against randomly drawn context views.

    refiner = Refiner(config, views, extent)           # views: Scene of context views
    g = refiner.start(g0)                              # validated, pruned, checked; a fresh leaf copy
    state = refiner.init_state(g)                      # zero Adam moments
    g, state, loss = refiner.step(g, state, k, gen)    # one update (k = 0-based step index)

`step` has a plain mode (no graph kept; `inplace=True` updates g and the state in place: the fast
path of `refine`) and a differentiable mode (the update is a graph function of g: an exact
unrolled meta-gradient on small problems).

`refine(...)` runs the whole loop (optional initial drop of near-transparent Gaussians, recorded
states, per-step timing, a callback that can stop early). The Gaussian count never changes during
a run (no densify / clone / split / prune).

Edge cases (defined behaviour):
- an empty set, a NaN/inf parameter, or a set emptied by `prune_opacity_below`: ValueError;
- a context view whose camera sees none of the Gaussians: its renders are the background, its
  loss has zero gradient, so a step drawn on it moves the parameters by Adam momentum only;
  `refine` warns once naming such views, and raises ValueError when no view sees any Gaussian;
- a non-finite loss or gradient during a run (divergence, a renderer problem): FloatingPointError
  naming the step, the views and the fields, raised before the update (the state stays finite).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from foresplat.cameras import Cameras
from foresplat.data.scene import Scene
from foresplat.gaussians import FIELDS, Gaussians
from foresplat.refine.adam import AdamState, adam_init, adam_update
from foresplat.refine.config import AdamLRs, RefineConfig
from foresplat.refine.loss import SSIMTargetStats, photometric_loss, psnr, ssim

Callback = Callable[[int, Gaussians, AdamState, float], "bool | None"]


def check_gaussians(g: Gaussians, name: str = "gaussians") -> Gaussians:
    """Validates an unbatched, non-empty, finite set; raises ValueError naming the field."""
    if not isinstance(g, Gaussians):
        raise TypeError(f"{name}: expected a Gaussians, got {type(g).__name__}")
    g.validate(name)
    if g.batch_shape:
        raise ValueError(f"{name}: the refiner takes an unbatched set, got batch shape {list(g.batch_shape)}")
    if g.num == 0:
        raise ValueError(f"{name}: the set is empty (N = 0): nothing to refine")
    return g


def drop_transparent(g: Gaussians, min_opacity: float) -> Gaussians:
    """Drops Gaussians with opacity < min_opacity (0 keeps all); raises if none would remain."""
    if min_opacity <= 0:
        return g
    keep = g.opacities().detach() >= min_opacity  # [N]
    if not bool(keep.any()):
        raise ValueError(f"prune_opacity_below={min_opacity}: every one of the {g.num} Gaussians "
                         "is below it, nothing would be left to refine")
    return g if bool(keep.all()) else g.select(keep)


@dataclass
class _ViewTensors:
    """Per-view tensors of a Scene in one dtype/device, built once."""

    images: torch.Tensor  # [V, H, W, 3]
    cameras: Cameras  # V cameras
    single: list[tuple[Cameras, torch.Tensor]]  # per view: (1 camera, image [1, H, W, 3])
    background: torch.Tensor | None  # [3] or None
    ssim_stats: list[SSIMTargetStats]  # per view: blurred target statistics of the fused SSIM


class Refiner:
    """Steppable refiner over the context views `views` (see module docstring).

    extent: scene extent scaling the means lr (default views.extent(), 3DGS's camera extent).
    total_steps: horizon of the means lr decay (default config.steps).
    """

    def __init__(self, config: RefineConfig, views: Scene, extent: float | None = None, *,
                 total_steps: int | None = None):
        self.config = config.validate()
        self.views = views.validate()
        if config.views_per_step > views.num_views:
            raise ValueError(f"RefineConfig.views_per_step={config.views_per_step} exceeds the "
                             f"{views.num_views} context views of {views.name!r}")
        self.extent = views.extent() if extent is None else float(extent)
        if not (math.isfinite(self.extent) and self.extent > 0):
            raise ValueError(f"Refiner: extent must be finite and > 0, got {self.extent}")
        self.total_steps = config.steps if total_steps is None else int(total_steps)
        self._cache: dict[tuple[torch.dtype, torch.device], _ViewTensors] = {}
        from foresplat.render import render  # imported here: render <- refine, no import cycle at load

        self._render_fn = render

    # ---- schedule and sampling ----------------------------------------------------------------
    def lrs(self, step: int) -> AdamLRs:
        """Learning rates of update `step` (0-based) of this run."""
        return self.config.lrs(step, self.extent, self.total_steps)

    def sample_views(self, generator: torch.Generator) -> list[int]:
        """views_per_step distinct context-view indices drawn with `generator` (a CPU generator)."""
        v, n = self.views.num_views, self.config.views_per_step
        if n == 1:
            return [int(torch.randint(v, (1,), generator=generator))]
        return torch.randperm(v, generator=generator)[:n].tolist()

    # ---- per-view tensors -----------------------------------------------------------------------
    def _tensors(self, scene: Scene, dtype: torch.dtype, device: torch.device) -> _ViewTensors:
        images = scene.images.to(device=device, dtype=dtype).contiguous()
        cams = Cameras(scene.cameras.viewmats.to(device=device, dtype=dtype),
                       scene.cameras.Ks.to(device=device, dtype=dtype), scene.width, scene.height)
        single = [(cams.index([i]), images[i:i + 1]) for i in range(scene.num_views)]
        bg = self.config.background
        bg_t = None if bg is None else torch.tensor(bg, dtype=dtype, device=device)
        stats = [SSIMTargetStats.of(images[i:i + 1]) for i in range(scene.num_views)]
        return _ViewTensors(images, cams, single, bg_t, stats)

    def _own(self, like: torch.Tensor) -> _ViewTensors:
        key = (like.dtype, like.device)
        vt = self._cache.get(key)
        if vt is None:
            vt = self._cache[key] = self._tensors(self.views, like.dtype, like.device)
        return vt

    # ---- rendering and loss -------------------------------------------------------------------
    def _render_views(self, g: Gaussians, idx: list[int], vt: _ViewTensors
                      ) -> tuple[torch.Tensor, torch.Tensor, SSIMTargetStats]:
        """Renders views idx of vt: (colors [C, H, W, 3], targets [C, H, W, 3], their SSIM statistics)."""
        if len(idx) == 1:
            (cams, target), stats = vt.single[idx[0]], vt.ssim_stats[idx[0]]
        else:
            cams, target = vt.cameras.index(idx), vt.images[idx]
            stats = SSIMTargetStats.cat([vt.ssim_stats[i] for i in idx])
        bg = None if vt.background is None else vt.background.expand(len(idx), 3)
        out = self._render_fn(g, cams, backgrounds=bg, backend=self.config.backend)
        return out.colors, target, stats

    def _views(self, g: Gaussians, idx: list[int], views: Scene | None) -> tuple[list[int], _ViewTensors]:
        """(indices, tensors) of the refiner's own views, or of the views idx of another scene."""
        n = self.views.num_views if views is None else views.num_views
        if not idx or min(idx) < -n or max(idx) >= n:
            where = "context views of the refiner" if views is None else f"views of {views.name!r}"
            raise IndexError(f"Refiner: view indices {idx} out of range for {n} {where}")
        if views is None:
            return idx, self._own(g.means)
        return list(range(len(idx))), self._tensors(views.subset(idx), g.dtype, g.device)

    def render(self, g: Gaussians, view_indices: Sequence[int] | int,
               views: Scene | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Renders views `view_indices` of `views` (default: the refiner's own context views).

        Returns (colors [C, H, W, 3], target images [C, H, W, 3]) in g's dtype/device.
        """
        idx = [view_indices] if isinstance(view_indices, int) else [int(i) for i in view_indices]
        pred, target, _ = self._render_views(g, *self._views(g, idx, views))
        return pred, target

    def loss(self, g: Gaussians, view_indices: Sequence[int] | int, views: Scene | None = None, *,
             twice_differentiable: bool = False) -> torch.Tensor:
        """Photometric loss (scalar tensor, mean over the views) of g on views `view_indices`.

        By default the SSIM term uses the fused, once-differentiable backward: a gradient of this
        loss may itself be part of a graph (e.g. the final loss of an unrolled refinement), but
        differentiating that gradient again needs twice_differentiable=True.
        """
        idx = [view_indices] if isinstance(view_indices, int) else [int(i) for i in view_indices]
        pred, target, stats = self._render_views(g, *self._views(g, idx, views))
        if twice_differentiable:
            return photometric_loss(pred, target, self.config.ssim_weight)
        return photometric_loss(pred, target, self.config.ssim_weight, fused=True, target_stats=stats)

    # ---- state and stepping -------------------------------------------------------------------
    def init_state(self, g: Gaussians) -> AdamState:
        """Validates g once (unbatched, non-empty, finite) and returns zero Adam moments."""
        check_gaussians(g)
        return adam_init(g)

    def start(self, g: Gaussians) -> Gaussians:
        """The starting set of a run: validated, near-transparent Gaussians dropped
        (config.prune_opacity_below), visibility checked, and copied into fresh leaf tensors that
        require grad (ready for `step(..., inplace=True)`; the input is never modified).

        Warns (RuntimeWarning) naming the context views that see none of the Gaussians and raises
        ValueError when no view sees any.
        """
        g = drop_transparent(check_gaussians(g), self.config.prune_opacity_below)
        blind = [i for i, c in enumerate(self.visible_counts(g).tolist()) if c == 0]
        name, v = self.views.name, self.views.num_views
        if len(blind) == v:
            raise ValueError(f"refine: none of the {v} context views of {name!r} sees any of the "
                             f"{g.num} Gaussians (check the cameras and the Gaussians' frame)")
        if blind:
            warnings.warn(f"refine: context views {blind} of {name!r} see none of the Gaussians; "
                          "steps drawn on them only apply Adam momentum", RuntimeWarning, stacklevel=3)
        return g.map(lambda t: t.detach().clone().requires_grad_(True))

    def visible_counts(self, g: Gaussians) -> torch.Tensor:
        """Number of Gaussians [V] whose 3-sigma footprint may touch each context view's image.

        A conservative test on centres: in front of the camera (z > 0.01) and within the image
        grown by the projected 3-sigma radius.
        """
        with torch.no_grad():
            cams = self.views.cameras.to(device=g.device, dtype=torch.float64)
            uv, z = cams.project(g.means.detach().double())  # [V, N, 2], [V, N]
            fmax = cams.Ks[:, :2, :2].diagonal(dim1=-2, dim2=-1).max(-1).values  # [V]
            r = 3.0 * g.scales().detach().double().max(-1).values  # [N]
            rad = r.unsqueeze(0) * fmax.unsqueeze(-1) / z.clamp(min=1e-6)  # [V, N] pixels
            inside = ((z > 0.01) & (uv[..., 0] > -rad) & (uv[..., 0] < self.views.width + rad)
                      & (uv[..., 1] > -rad) & (uv[..., 1] < self.views.height + rad))
            return inside.sum(-1)

    def step(self, g: Gaussians, state: AdamState, step: int, generator: torch.Generator,
             differentiable: bool = False, *, inplace: bool = False,
             stats: dict | None = None) -> tuple[Gaussians, AdamState, float]:
        """One refinement update: draw views, loss, gradient, Adam. Returns (g_next, state_next, loss).

        differentiable=False: g_next is detached; with inplace=True, g's and state's tensors are
            updated in place and returned (g must not be needed afterwards), else they are untouched.
        differentiable=True: g_next (and the state) are graph functions of g, so a later loss
            can be back-propagated through this step to g (second-order: the gradient itself is
            differentiated; memory grows with the number of steps).
        stats: if a dict is given, receives "psnr" (dB, mean over this step's views, of the render
            before the update) and "views" (the drawn indices).
        """
        idx = self.sample_views(generator)
        vt = self._own(g.means)
        if differentiable:
            params = g.map(lambda t: t if t.requires_grad else t.detach().requires_grad_(True))
            pred, target, _ = self._render_views(params, idx, vt)
            loss = photometric_loss(pred, target, self.config.ssim_weight)  # twice differentiable
            grads = torch.autograd.grad(loss, params.tensors(), create_graph=True, allow_unused=True)
        else:
            params = g.map(lambda t: t if (t.is_leaf and t.requires_grad) else t.detach().requires_grad_(True))
            with torch.enable_grad():
                pred, target, ssim_stats = self._render_views(params, idx, vt)
                loss = photometric_loss(pred, target, self.config.ssim_weight, fused=True,
                                        target_stats=ssim_stats)
                grads = torch.autograd.grad(loss, params.tensors(), allow_unused=True)
        grads = Gaussians.from_tensors([torch.zeros_like(p) if gr is None else gr  # unused field: 0
                                        for p, gr in zip(params.tensors(), grads)])
        if stats is not None:
            with torch.no_grad():
                stats["psnr"] = float(psnr(pred.detach(), target).mean())
                stats["views"] = idx
        # one host sync for the loss and the finiteness of every gradient
        checks = torch.stack([loss.detach(), *torch._foreach_norm([t.detach() for t in grads.tensors()])])
        value, *norms = checks.tolist()
        if not math.isfinite(value):
            raise FloatingPointError(f"refine: the loss became {value} at step {step} (views {idx}); "
                                     "the refinement diverged or the Gaussians hold non-finite values")
        bad = [f for f, nrm in zip(FIELDS, norms) if not math.isfinite(nrm)]
        if bad:
            raise FloatingPointError(f"refine: the gradient of {', '.join(bad)} holds NaN/inf at step {step} "
                                     f"(views {idx}, loss {value:.6g}, backend {self.config.backend!r}); "
                                     "the parameters were not updated")
        cfg = self.config
        g_next, state_next = adam_update(params, grads, state, self.lrs(step), step, differentiable,
                                         betas=cfg.betas, eps=cfg.eps, inplace=inplace)
        return g_next, state_next, value


@dataclass
class RefineResult:
    """Output of `refine`: the final Gaussians (detached), per-step losses and wall times, and the
    states recorded before the chosen steps (recorded[k] = the set after k updates)."""

    gaussians: Gaussians
    losses: list[float]
    step_seconds: list[float]
    recorded: dict[int, Gaussians] = field(default_factory=dict)
    state: AdamState | None = None
    """The final Adam state (to continue a run)."""


def refine(gaussians: Gaussians, views: Scene, config: RefineConfig, *, extent: float | None = None,
           record_steps: Sequence[int] = (), callback: Callback | None = None,
           total_steps: int | None = None) -> RefineResult:
    """Refines `gaussians` on the context `views` for config.steps Adam updates (inputs untouched).

    record_steps: steps k in [0, config.steps] whose state BEFORE update k (= after k updates) is
        recorded (detached copies); a run stopped early records only the steps it reached.
    callback(step, gaussians, state, loss) is called after every update with step = the number
        of updates applied so far and that update's loss; returning True stops the run. The
        tensors passed are updated in place by later steps: clone what you keep.
    The view sequence is drawn from torch.Generator().manual_seed(config.seed): deterministic per seed.
    """
    refiner = Refiner(config, views, extent, total_steps=total_steps)
    g = refiner.start(gaussians)
    state = refiner.init_state(g)
    bad = [k for k in record_steps if not 0 <= int(k) <= config.steps]
    if bad:
        raise ValueError(f"refine: record_steps {bad} outside [0, {config.steps}]")
    to_record = {int(k) for k in record_steps}
    recorded: dict[int, Gaussians] = {}
    losses: list[float] = []
    seconds: list[float] = []
    gen = torch.Generator().manual_seed(int(config.seed))
    done = 0
    for k in range(config.steps):
        if k in to_record:
            recorded[k] = g.detach().clone()
        t0 = time.perf_counter()
        g, state, loss = refiner.step(g, state, k, gen, inplace=True)
        seconds.append(time.perf_counter() - t0)
        losses.append(loss)
        done = k + 1
        if callback is not None and callback(done, g, state, loss):
            break
    if done in to_record:
        recorded[done] = g.detach().clone()
    return RefineResult(g.detach(), losses, seconds, recorded, state)


def view_metrics(g: Gaussians, views: Scene, *, backend: str = "auto",
                 background: Sequence[float] | None = None) -> dict[str, list[float]]:
    """PSNR (dB) and SSIM per view of g rendered on `views` (no grad, one view at a time)."""
    out: dict[str, list[float]] = {"psnr": [], "ssim": []}
    from foresplat.render import render

    g = g.detach()
    bg = None if background is None else torch.tensor(background, dtype=g.dtype, device=g.device)
    cams = Cameras(views.cameras.viewmats.to(g.means), views.cameras.Ks.to(g.means), views.width, views.height)
    with torch.no_grad():
        for i in range(views.num_views):
            pred = render(g, cams.index([i]), backgrounds=None if bg is None else bg.expand(1, 3),
                          backend=backend).colors.clamp(0, 1)  # [1, H, W, 3]
            target = views.images[i:i + 1].to(pred)
            out["psnr"].append(float(psnr(pred, target)[0]))
            out["ssim"].append(float(ssim(pred, target)))
    return out
