"""Training rules (foresplat.meta): exact gradients on toy problems, reductions, determinism, isolation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from foresplat.cameras import Cameras, look_at
from foresplat.data.scene import Scene, split_views
from foresplat.gaussians import FIELDS, Gaussians
from foresplat.meta import RuleConfig, anchor_steps, build_rule, pick_views, render_loss, sample_k, view_set
from foresplat.meta.reptile import lr_sums
from foresplat.refine import RefineConfig, Refiner
from foresplat.render import render

F64 = torch.float64


def random_gaussians(n: int, seed: int, dtype=F64) -> Gaussians:
    """n random Gaussians around the origin with sh degree 1."""
    g = torch.Generator().manual_seed(seed)
    return Gaussians(torch.randn(n, 3, generator=g, dtype=dtype) * 0.5,
                     torch.randn(n, 4, generator=g, dtype=dtype),
                     -1.6 + 0.2 * torch.randn(n, 3, generator=g, dtype=dtype),
                     torch.randn(n, generator=g, dtype=dtype),
                     0.5 * torch.randn(n, 4, 3, generator=g, dtype=dtype))


def toy_scene(views: int = 6, size: int = 12, dtype=F64) -> Scene:
    """A ring of `views` cameras looking at a random ground-truth splat, rendered by the reference rasterizer."""
    ang = torch.arange(views, dtype=dtype) * (2 * math.pi / views)
    eye = torch.stack([3 * torch.cos(ang), 3 * torch.sin(ang), torch.ones_like(ang)], -1)  # [V, 3]
    vm = look_at(eye, torch.zeros(3, dtype=dtype), torch.tensor([0.0, 0.0, 1.0], dtype=dtype))
    K = torch.tensor([[1.2 * size, 0, size / 2], [0, 1.2 * size, size / 2], [0, 0, 1]], dtype=dtype)
    cams = Cameras(vm, K.expand(views, 3, 3).clone(), size, size)
    with torch.no_grad():
        images = render(random_gaussians(20, 100, dtype), cams, backend="reference").colors.clamp(0, 1)
    return Scene(images, cams, "toy")


@pytest.fixture(scope="module")
def split():
    return split_views(toy_scene(), num_context=4, num_target=2, seed=0)


@pytest.fixture(scope="module")
def g_init() -> Gaussians:
    return random_gaussians(16, 1)


def cfg(name: str, **kw) -> RuleConfig:
    base = dict(name=name, lam=0.0, k_min=2, k_max=4, stride=2, backend="reference",
                refine=RefineConfig(backend="reference"))
    base.update(kw)
    return RuleConfig(**base)


def rule_grad(config: RuleConfig, g: Gaussians, split, seed: int = 0) -> tuple[list[torch.Tensor], dict]:
    """Gradient of the rule's loss w.r.t. leaf copies of g (one per field) and the logs."""
    g0 = g.clone().requires_grad_(True)
    out = build_rule(config)(g0, split, torch.Generator().manual_seed(seed))
    out.loss.backward()
    return [t.grad.clone() for t in g0.tensors()], out.logs


def assert_grads_close(a, b, rtol=1e-9, atol=1e-12):
    for f, x, y in zip(FIELDS, a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m: f"field {f}: {m}")


# ---- config and schedule -------------------------------------------------------------------------
def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="RuleConfig.name"):
        RuleConfig(name="maml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RuleConfig.lam"):
        RuleConfig(lam=1.5)
    with pytest.raises(ValueError, match="k_min"):
        RuleConfig(k_min=5, k_max=3)
    with pytest.raises(ValueError, match="stride"):
        RuleConfig(stride=0)
    with pytest.raises(ValueError, match="anchor_first/anchor_last"):
        RuleConfig(name="metagrad", anchor_first=False, anchor_last=False, k_min=3, stride=10)
    with pytest.raises(ValueError, match="anchor_views"):
        RuleConfig(anchor_views="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unrolled_max_k"):
        build_rule(RuleConfig(name="unrolled", k_min=1, k_max=9, unrolled_max_k=8))


def test_anchor_steps():
    assert anchor_steps(25, 10) == [0, 10, 20, 25]
    assert anchor_steps(20, 10) == [0, 10, 20]
    assert anchor_steps(25, 10, anchor_first=False, anchor_last=False) == [10, 20]
    assert anchor_steps(0, 10) == [0]
    assert anchor_steps(3, 1) == [0, 1, 2, 3]
    assert anchor_steps(5, 10, anchor_first=False) == [5]


def test_sample_k_covers_the_range():
    c = RuleConfig(k_min=3, k_max=5)
    gen = torch.Generator().manual_seed(0)
    assert {sample_k(c, gen) for _ in range(200)} == {3, 4, 5}


# ---- exactness -----------------------------------------------------------------------------------
def test_metagrad_is_the_mean_of_the_anchor_gradients(split, g_init):
    """lam = 0: the gradient on G0's leaves equals the equal-weight mean of dL(G_k)/dG_k, recomputed here."""
    config = cfg("metagrad", k_min=5, k_max=7, stride=2, anchor_views="both", anchor_views_per_anchor=2)
    got, logs = rule_grad(config, g_init, split, seed=3)
    # replay the same draws by hand: K, then per step the anchor views (at anchors) and the refiner's view
    gen = torch.Generator().manual_seed(3)
    k = sample_k(config, gen)
    anchors = anchor_steps(k, config.stride)
    assert logs["K"] == k and logs["num_anchors"] == len(anchors)
    refiner = Refiner(config.refine, split.context)
    g = g_init.clone()
    state = refiner.init_state(g)
    grads = []
    for step in range(k + 1):
        if step in anchors:
            views = pick_views(view_set(split, "both"), 2, gen)
            leaf = g.detach().clone().requires_grad_(True)
            grads.append(torch.autograd.grad(render_loss(leaf, views, config), leaf.tensors()))
        if step < k:
            g, state, _ = refiner.step(g, state, step, gen)
    want = [torch.stack(gs).mean(0) for gs in zip(*grads)]
    assert_grads_close(got, want, rtol=1e-12, atol=1e-15)
    assert logs["anchor_grad_norm"] > 0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_unrolled_matches_finite_differences(split, g_init, k):
    """The exact meta-gradient through K functional-Adam steps vs central differences (float64)."""
    config = cfg("unrolled", lam=0.3, k_min=k, k_max=k, stride=1, anchor_views="target",
                 anchor_views_per_anchor=None, unrolled_eps=1e-6)
    rule = build_rule(config)
    got, _ = rule_grad(config, g_init, split, seed=5)

    def value(g: Gaussians) -> float:
        with torch.enable_grad():  # the refiner differentiates internally
            return float(rule(g, split, torch.Generator().manual_seed(5)).loss.detach())

    pick = torch.Generator().manual_seed(k)
    h = 1e-6
    for fi, name in enumerate(FIELDS):
        t = getattr(g_init, name)
        for _ in range(2):
            idx = tuple(int(torch.randint(s, (1,), generator=pick)) for s in t.shape)
            plus, minus = g_init.clone(), g_init.clone()
            getattr(plus, name)[idx] += h
            getattr(minus, name)[idx] -= h
            fd = (value(plus) - value(minus)) / (2 * h)
            assert got[fi][idx].item() == pytest.approx(fd, rel=1e-4, abs=1e-7), (name, idx)


def test_unrolled_is_metagrad_when_the_refiner_barely_moves(split, g_init):
    """With vanishing learning rates every Jacobian dG_{k+1}/dG_k -> I: unrolled -> metagrad (same draws)."""
    tiny = RefineConfig(backend="reference", lr_means=1e-12, lr_log_scales=1e-12, lr_quats=1e-12,
                        lr_opacity=1e-12, lr_sh_dc=1e-12, lr_sh_rest=1e-12)
    common = dict(k_min=3, k_max=3, stride=1, refine=tiny, anchor_views="context", anchor_views_per_anchor=1,
                  unrolled_eps=1e-3)
    meta, _ = rule_grad(cfg("metagrad", **common), g_init, split, seed=2)
    unrolled, _ = rule_grad(cfg("unrolled", **common), g_init, split, seed=2)
    assert_grads_close(unrolled, meta, rtol=1e-6, atol=1e-9)


def test_unrolled_differs_from_metagrad_at_normal_learning_rates(split, g_init):
    """The first-order approximation is an approximation: with real steps the two gradients differ."""
    common = dict(k_min=3, k_max=3, stride=1, anchor_views="context", anchor_views_per_anchor=None)
    meta, _ = rule_grad(cfg("metagrad", **common), g_init, split, seed=2)
    unrolled, _ = rule_grad(cfg("unrolled", **common), g_init, split, seed=2)
    diff = sum(float((a - b).norm()) for a, b in zip(meta, unrolled))
    assert diff > 1e-3 * sum(float(a.norm()) for a in meta)  # ~1% at K = 3 on this toy


@pytest.mark.parametrize("name", ["metagrad", "dense", "unrolled"])
@pytest.mark.parametrize("lam", [0.0, 0.4])
def test_k0_reduces_to_vanilla(split, g_init, name, lam):
    """K = 0: the only anchor is G0 itself, so every anchor rule's gradient is the vanilla gradient."""
    common = dict(k_min=0, k_max=0, anchor_views="both", zero_step_views="both", anchor_views_per_anchor=None)
    want, _ = rule_grad(cfg("vanilla", **common), g_init, split)
    got, logs = rule_grad(cfg(name, lam=lam, **common), g_init, split)
    assert logs["K"] == 0 and logs["num_anchors"] == 1
    assert_grads_close(got, want)


def test_k0_reptile_is_lam_times_vanilla(split, g_init):
    """Reptile's direction G0 - G_K vanishes at K = 0: only lam * L(G0) is left."""
    common = dict(k_min=0, k_max=0, zero_step_views="both")
    want, _ = rule_grad(cfg("vanilla", **common), g_init, split)
    got, _ = rule_grad(cfg("reptile", lam=0.25, **common), g_init, split)
    assert_grads_close(got, [0.25 * w for w in want])


@pytest.mark.parametrize("normalize", [True, False])
def test_reptile_direction(split, g_init, normalize):
    """lam = 0: the gradient is (G0 - G_K) / (summed per-group lr, or K), G_K replayed by hand."""
    config = cfg("reptile", k_min=4, k_max=4, reptile_normalize=normalize)
    got, _ = rule_grad(config, g_init, split, seed=1)
    gen = torch.Generator().manual_seed(1)
    k = sample_k(config, gen)
    refiner = Refiner(config.refine, split.context)
    g = g_init.clone()
    state = refiner.init_state(g)
    for step in range(k):
        g, state, _ = refiner.step(g, state, step, gen)
    if normalize:
        sums = lr_sums(config, k, refiner.extent, g_init)
        # the summed lrs by hand: constant groups are K * lr; the means follow the decay schedule
        assert sums.quats.item() == pytest.approx(k * config.refine.lr_quats)
        assert sums.means.item() == pytest.approx(sum(refiner.lrs(s).means for s in range(k)))
        want = [(a - b) / s for a, b, s in zip(g_init.tensors(), g.tensors(), sums.tensors())]
    else:
        want = [(a - b) / k for a, b in zip(g_init.tensors(), g.tensors())]
    assert_grads_close(got, want, rtol=1e-10, atol=1e-14)


def test_pruned_gaussians_get_no_refinement_gradient(split, g_init):
    """With the refiner's initial drop, Gaussians below the opacity threshold get zero anchor gradient."""
    g = g_init.clone()
    g.opacity_logits[:3] = -8.0  # opacity ~3e-4
    config = cfg("metagrad", refine=RefineConfig(backend="reference", prune_opacity_below=0.005))
    got, _ = rule_grad(config, g, split)
    for t in got:
        assert float(t[:3].abs().max()) == 0.0
    assert float(got[0][3:].abs().max()) > 0


# ---- interface guarantees ------------------------------------------------------------------------
class Head(torch.nn.Module):
    """A stand-in predictor head: G0 = fixed base + a linear map of a fixed feature (float64)."""

    def __init__(self, base: Gaussians):
        super().__init__()
        self.base = base
        self.lin = torch.nn.ModuleList(torch.nn.Linear(4, t.numel(), dtype=F64) for t in base.tensors())
        for m in self.lin:
            torch.nn.init.normal_(m.weight, std=1e-3)
            torch.nn.init.zeros_(m.bias)

    def forward(self) -> Gaussians:
        x = torch.ones(4, dtype=F64)
        return Gaussians.from_tensors([b + m(x).view_as(b) for b, m in zip(self.base.tensors(), self.lin)])


@pytest.mark.parametrize("name", ["vanilla", "metagrad", "dense", "reptile", "unrolled"])
def test_rule_touches_only_g0_and_is_deterministic(split, g_init, name):
    """Gradients reach the head; G0, the split and the refiner config are untouched; same seed -> same result."""
    config = cfg(name, lam=0.5, anchor_views="both")
    images = split.context.images.clone(), split.target.images.clone()
    refine_before = replace(config.refine)
    rule = build_rule(config)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        head = Head(g_init)
        g0 = head()
        torch.manual_seed(123)  # the rule must not consume the global RNG
        before = [t.detach().clone() for t in g0.tensors()]
        out = rule(g0, split, torch.Generator().manual_seed(7))
        # the global RNG was not consumed: its next draw is the first draw after seeding
        assert torch.rand(()).item() == torch.rand((), generator=torch.Generator().manual_seed(123)).item()
        out.loss.backward()
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        for t, b in zip(g0.tensors(), before):
            assert torch.equal(t.detach(), b)
        grads = [p.grad.clone() for p in head.parameters()]
        assert all(gr is not None for gr in grads) and sum(float(gr.abs().sum()) for gr in grads) > 0
        runs.append((float(out.loss.detach()), grads, out.logs))
    assert torch.equal(split.context.images, images[0]) and torch.equal(split.target.images, images[1])
    assert config.refine == refine_before
    (l1, g1, logs1), (l2, g2, logs2) = runs
    assert l1 == l2
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)
    assert {k: v for k, v in logs1.items() if not k.startswith("time")} == \
        {k: v for k, v in logs2.items() if not k.startswith("time")}


def test_different_seeds_draw_differently(split, g_init):
    config = cfg("metagrad", k_min=1, k_max=6, stride=1)
    ks = set()
    for seed in range(6):
        _, logs = rule_grad(config, g_init, split, seed=seed)
        ks.add(logs["K"])
    assert len(ks) > 1


def test_logs(split, g_init):
    _, logs = rule_grad(cfg("metagrad", k_min=5, k_max=5, stride=2), g_init, split)
    for key in ("K", "num_anchors", "zero_step_loss", "anchor_loss_mean", "anchor_loss_first",
                "anchor_loss_last", "time_inner", "time_anchor", "time_zero_step"):
        assert key in logs and math.isfinite(logs[key]), key
    assert logs["K"] == 5 and logs["num_anchors"] == 4  # 0, 2, 4, 5


def test_log_zero_step_off_changes_logs_only(split, g_init):
    on, logs_on = rule_grad(cfg("metagrad"), g_init, split, seed=4)
    off, logs_off = rule_grad(cfg("metagrad", log_zero_step=False), g_init, split, seed=4)
    assert "zero_step_loss" in logs_on and "zero_step_loss" not in logs_off
    assert_grads_close(on, off, rtol=0, atol=0)


def test_bad_inputs_raise(split, g_init):
    rule = build_rule(cfg("metagrad"))
    with pytest.raises(ValueError, match="unbatched"):
        rule(Gaussians.stack([g_init, g_init]), split, torch.Generator())
    bad = g_init.clone()
    bad.means[0, 0] = float("nan")
    with pytest.raises(ValueError, match="g0.means"):
        rule(bad, split, torch.Generator())
    no_target = replace(split, target=split.target.subset([]), target_indices=[])
    with pytest.raises(ValueError, match="no target views"):
        rule(g_init, no_target, torch.Generator())


def test_unrolled_memory_is_checked_before_the_batch_runs(split, g_init, monkeypatch):
    from foresplat.errors import MemoryLimitError
    from foresplat.limits import unrolled_bytes
    from foresplat.train.loop import run_rule

    rule = build_rule(cfg("unrolled", lam=0.5, k_min=2, k_max=8, stride=2))
    h, w = split.context.images.shape[-3:-1]
    # K = 8 refiner renders + 5 anchors (0, 2, 4, 6, 8) x 1 view, at the largest K whatever K is drawn
    assert rule.peak_bytes(g_init, split) == unrolled_bytes(13, g_init.num, h * w)
    # every anchor scoring the whole anchor pool (the 2 target views): 8 + 5 x 2 renders
    every = build_rule(cfg("unrolled", k_min=2, k_max=8, stride=2, anchor_views="target", anchor_views_per_anchor=None))
    assert every.peak_bytes(g_init, split) == unrolled_bytes(18, g_init.num, h * w)
    calls = []
    monkeypatch.setattr(type(rule), "__call__", lambda self, *a: calls.append(a))
    monkeypatch.setenv("FORESPLAT_MAX_MEMORY_GB", str(1.5 * rule.peak_bytes(g_init, split) / (1 << 30)))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    run_rule(rule, [g_init, g_init], [split, split], gens, workers=1)  # one scene at a time fits
    assert len(calls) == 2
    with pytest.raises(MemoryLimitError, match=r"UnrolledRule on 2 scene\(s\) at once .* --max-memory-gb"):
        run_rule(rule, [g_init, g_init], [split, split], gens, workers=2)  # two at once do not
    assert len(calls) == 2  # refused before any call
