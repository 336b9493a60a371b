"""Initial Gaussians for refinement: from sparse points, random in the scene bounds, a .ply, or a predictor.

`initialize(spec, scene)` parses the CLI form: "points", "random", "ply:PATH" or "ckpt:PATH", and
"predicted" / "ckpt:PATH" followed by START_SUFFIXES ("+consistent", "+foreground", "+points").
Point-based initialisations follow 3DGS: colour -> SH DC, isotropic log-scale = log of the
root-mean-square distance to the 3 nearest other points (3DGS's distCUDA2, clamped at 1e-7 for
the squared distance), identity quaternions, opacity 0.1.
"""

from __future__ import annotations

from pathlib import Path

import torch

from foresplat._checks import check_tensor
from foresplat.data.scene import Scene
from foresplat.gaussians import Gaussians, rgb_to_sh_dc


def knn_mean_sq_dist(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Mean squared distance [P] from each point of points [P, 3] to its k nearest other points.

    Exact, with a KD-tree (scipy.spatial.cKDTree, float64): O(P log P); 100k points take ~0.6 s
    and 1M ~15 s on 2 CPU cores (benchmarks/knn_init.py, BENCHMARKS.md). With fewer than k other
    points the available ones are used; a single point gets 0. Duplicated points count as
    neighbours at distance 0 (as brute force). Returns points' dtype and device.
    """
    from scipy.spatial import cKDTree

    p = points.shape[0]
    kk = min(k, p - 1)
    if kk <= 0:
        return torch.zeros(p, dtype=points.dtype, device=points.device)
    pts = points.detach().to(device="cpu", dtype=torch.float64).numpy()
    tree = cKDTree(pts, leafsize=16, balanced_tree=False, compact_nodes=False)
    d, idx = tree.query(pts, k=kk + 1, workers=-1)  # [P, kk+1]: usually the point itself first
    d2 = torch.from_numpy(d).pow_(2)
    idx = torch.from_numpy(idx)
    own = idx == torch.arange(p).unsqueeze(1)  # [P, kk+1]: the point itself (at most once)
    # drop the point itself; where a duplicate displaced it from the k+1 results, drop the farthest
    drop = torch.where(own.any(1), own.to(torch.int64).argmax(1), torch.full((p,), kk))
    keep = torch.ones_like(own)
    keep[torch.arange(p), drop] = False
    out = d2[keep].view(p, kk).mean(1)
    return out.to(device=points.device, dtype=points.dtype)


def knn_mean_sq_dist_bruteforce(points: torch.Tensor, k: int = 3, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """Reference for `knn_mean_sq_dist` by chunked all-pairs torch.cdist: O(P^2) time (tests only)."""
    p = points.shape[0]
    kk = min(k, p - 1)
    if kk <= 0:
        return torch.zeros(p, dtype=points.dtype, device=points.device)
    rows = max(1, chunk_elems // max(p, 1))
    out = torch.empty(p, dtype=points.dtype, device=points.device)
    for start in range(0, p, rows):
        stop = min(start + rows, p)
        d2 = torch.cdist(points[start:stop], points).pow_(2)  # [r, P]
        r = torch.arange(stop - start, device=points.device)
        d2[r, r + start] = float("inf")  # exclude the point itself
        out[start:stop] = d2.topk(kk, dim=1, largest=False).values.mean(1)
    return out


def init_from_points(points: torch.Tensor, colors: torch.Tensor | None = None, *, sh_degree: int = 0,
                     opacity: float = 0.1, k: int = 3, min_scale: float | None = None) -> Gaussians:
    """3DGS initialisation from points [P, 3] and colours [P, 3] in [0, 1] (None = grey 0.5).

    min_scale: scale used when every neighbour distance is 0 (a single point, or duplicates);
    defaults to 1e-3 x the points' bounding-box diagonal (or 1e-3 if that is 0).
    Returns float32 Gaussians with N = P (sh [P, (sh_degree+1)^2, 3], higher bands zero).
    """
    check_tensor("points", points, (None, 3))
    if points.dim() != 2 or points.shape[0] == 0:
        raise ValueError(f"init_from_points: expected a non-empty [P, 3] point set, got {list(points.shape)}")
    pts = points.detach().float()
    if colors is None:
        cols = torch.full_like(pts, 0.5)
    else:
        check_tensor("point_colors", colors, (None, 3))
        if colors.shape != points.shape:
            raise ValueError(f"init_from_points: colors {list(colors.shape)} do not match points {list(points.shape)}")
        cols = colors.detach().float().clamp(0, 1)
    if not (0 < opacity < 1):
        raise ValueError(f"init_from_points: opacity must be in (0, 1), got {opacity}")
    if sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"init_from_points: sh_degree must be 0..3, got {sh_degree}")
    dist2 = knn_mean_sq_dist(pts, k).clamp(min=1e-7)  # [P]
    if min_scale is None:
        diag = float((pts.max(0).values - pts.min(0).values).norm())
        min_scale = 1e-3 * diag if diag > 0 else 1e-3
    if pts.shape[0] == 1:
        dist2 = torch.full_like(dist2, min_scale ** 2)
    log_scales = (0.5 * torch.log(dist2)).unsqueeze(-1).repeat(1, 3)  # [P, 3]
    n = pts.shape[0]
    quats = torch.zeros(n, 4, dtype=torch.float32, device=pts.device)
    quats[:, 0] = 1.0
    sh = torch.zeros(n, (sh_degree + 1) ** 2, 3, dtype=torch.float32, device=pts.device)
    sh[:, 0] = rgb_to_sh_dc(cols)
    logit = torch.logit(torch.tensor(float(opacity))).item()
    opacity_logits = torch.full((n,), logit, dtype=torch.float32, device=pts.device)
    return Gaussians(pts.clone(), quats, log_scales, opacity_logits, sh)


def init_random(bounds: torch.Tensor, n: int, *, seed: int = 0, sh_degree: int = 0,
                opacity: float = 0.1) -> Gaussians:
    """n Gaussians uniform in the box bounds [2, 3] (min row, max row) with uniform random colours.

    Scales as `init_from_points` (nearest-neighbour distances of the random points);
    deterministic per seed.
    """
    check_tensor("bounds", bounds, (2, 3))
    if n < 1:
        raise ValueError(f"init_random: n must be >= 1, got {n}")
    lo, hi = bounds[0].float(), bounds[1].float()
    if bool((hi < lo).any()):
        raise ValueError(f"init_random: bounds max {hi.tolist()} below min {lo.tolist()}")
    gen = torch.Generator().manual_seed(int(seed))
    pts = lo + (hi - lo) * torch.rand(n, 3, generator=gen)  # [n, 3]
    cols = torch.rand(n, 3, generator=gen)
    return init_from_points(pts.to(bounds.device), cols.to(bounds.device), sh_degree=sh_degree, opacity=opacity)


def scene_bounds(scene: Scene) -> torch.Tensor:
    """An axis-aligned box [2, 3] (min, max) holding the scene content.

    With sparse points: their bounding box (1st-99th percentile per axis, padded by 10%, so a few
    outliers do not inflate it). Without: a cube around the cameras' look-at point (the least-squares
    intersection of their optical axes, or the point at the mid depth (near + far) / 2 along the mean
    axis when the axes are near parallel) whose half-size is the median camera distance times the
    tangent of the narrowest half field of view, i.e. the box that fills the views.
    """
    if scene.points is not None and scene.points.shape[0] >= 2:
        pts = scene.points.detach().double()
        lo = torch.quantile(pts, 0.01, dim=0)
        hi = torch.quantile(pts, 0.99, dim=0)
        pad = 0.1 * (hi - lo).clamp(min=1e-6)
        return torch.stack([lo - pad, hi + pad]).float()
    cams = scene.cameras
    centers = cams.centers().detach().double()  # [C, 3]
    axes = cams.viewmats[..., 2, :3].detach().double()  # [C, 3] camera z axis in world coordinates
    axes = axes / axes.norm(dim=-1, keepdim=True)
    eye = torch.eye(3, dtype=torch.float64, device=centers.device)
    proj = eye - axes.unsqueeze(-1) * axes.unsqueeze(-2)  # [C, 3, 3]
    a = proj.sum(0)
    b = (proj @ centers.unsqueeze(-1)).sum(0).squeeze(-1)
    evals = torch.linalg.eigvalsh(a)
    if float(evals[0]) > 1e-3 * float(evals[-1]) and cams.num >= 2:
        center = torch.linalg.solve(a, b)
    else:
        mean_axis = axes.mean(0)
        mean_axis = mean_axis / mean_axis.norm().clamp(min=1e-12)
        center = centers.mean(0) + 0.5 * (scene.near + min(scene.far, 1e3 * scene.near)) * mean_axis
    dist = (centers - center).norm(dim=-1).median()
    K = cams.Ks.detach().double()
    tan_half = torch.minimum(cams.width / (2 * K[..., 0, 0]), cams.height / (2 * K[..., 1, 1])).min()
    half = float(dist * tan_half)
    return torch.stack([center - half, center + half]).float()


def scene_background(scene: Scene, tol: float = 0.02, min_fraction: float = 0.95
                     ) -> tuple[float, float, float] | None:
    """The uniform background colour of a masked scene (e.g. RGBA images composited onto white),
    or None: the median colour of the pixels with mask <= 1e-3 when at least min_fraction of them
    lie within tol of it in every channel; None without masks or when the background varies."""
    if scene.masks is None:
        return None
    bg = scene.images[scene.masks <= 1e-3]  # [P, 3]
    if bg.shape[0] < 16:
        return None
    med = bg.median(0).values  # [3]
    close = ((bg - med).abs() <= tol).all(-1).float().mean()
    if float(close) < min_fraction:
        return None
    return (float(med[0]), float(med[1]), float(med[2]))


def carve_points(scene: Scene, n: int, *, seed: int = 0, max_rounds: int = 50,
                 threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse points from foreground masks (a visual hull): points [n', 3] and colours [n', 3].

    Uniform candidates in `scene_bounds(scene)` are kept when they project in front of at least
    one camera and every camera they project into sees them on its mask (nearest pixel > threshold);
    a point's colour is the mean image colour at its projections (occlusion ignored). Draws until n
    points are kept or max_rounds batches of 4n candidates were tried (n' <= n, deterministic per seed).
    """
    if scene.masks is None:
        raise ValueError(f"carve_points: scene {scene.name!r} has no masks")
    bounds = scene_bounds(scene)
    gen = torch.Generator().manual_seed(int(seed))
    cams = scene.cameras.to(torch.float32)
    masks = scene.masks.float()  # [V, H, W]
    images = scene.images.float()  # [V, H, W, 3]
    V, H, W = masks.shape
    kept_p, kept_c, total = [], [], 0
    for _ in range(max_rounds):
        cand = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(4 * n, 3, generator=gen)  # [M, 3]
        uv, z = cams.project(cand)  # [V, M, 2], [V, M]
        u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
        inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)  # [V, M]
        flat = (v.clamp(0, H - 1) * W + u.clamp(0, W - 1))  # [V, M]
        on_mask = torch.gather(masks.view(V, -1), 1, flat) > threshold  # [V, M]
        keep = inside.any(0) & (on_mask | ~inside).all(0)  # [M]
        if bool(keep.any()):
            cols = torch.gather(images.view(V, -1, 3), 1, flat.unsqueeze(-1).expand(-1, -1, 3))  # [V, M, 3]
            w = inside.float().unsqueeze(-1)
            mean_col = (cols * w).sum(0) / w.sum(0).clamp(min=1)  # [M, 3]
            kept_p.append(cand[keep])
            kept_c.append(mean_col[keep])
            total += int(keep.sum())
        if total >= n:
            break
    if total == 0:
        raise ValueError(f"carve_points: no point of scene {scene.name!r}'s bounds lies inside every "
                         "mask it projects into (empty masks or inconsistent cameras?)")
    return torch.cat(kept_p)[:n], torch.cat(kept_c)[:n]


START_SUFFIXES = ("consistent", "foreground", "points")
"""Words a predicted start may end with ("+word"): keep_depth_consistent, keep_foreground
(foresplat.models.filters) and the scene's sparse points added, applied in that order."""


def split_start_suffixes(spec: str) -> tuple[str, set[str]]:
    """"PATH+consistent+points" -> ("PATH", {"consistent", "points"}): the START_SUFFIXES at the end of
    `spec`, in any order (only those words are stripped, so a "+" elsewhere in a path stays)."""
    words: set[str] = set()
    while True:
        word = next((w for w in START_SUFFIXES if spec.endswith("+" + w)), None)
        if word is None:
            return spec, words
        words.add(word)
        spec = spec[: -len(word) - 1]


def predict_on(model: torch.nn.Module, scene: Scene, **filters) -> Gaussians:
    """A feed-forward model's prediction (a Predictor, or a foresplat.models.adapter.ModelAdapter) from
    every view of `scene`, resized down to multiples of the model's `divisor` -> Gaussians [N] on the CPU.
    filters: foresplat.models.filters.filter_prediction's options (consistent, foreground, background),
    applied with the resized views the model saw."""
    d = int(model.divisor)
    w, h = max(d, scene.width // d * d), max(d, scene.height // d * d)
    if (w, h) != (scene.width, scene.height):  # the model needs multiples of its divisor
        scene = scene.resized(w, h)
    with torch.no_grad():
        g = model.predict(scene).detach().to(device="cpu", dtype=torch.float32)
    if filters:
        from foresplat.models.filters import filter_prediction

        g = filter_prediction(g, scene.to("cpu"), **filters)
    return g


def initialize(spec: str, scene: Scene, *, num_random: int = 10_000, seed: int = 0,
               sh_degree: int = 0, background: tuple[float, float, float] | None = None) -> Gaussians:
    """Initial Gaussians from a spec: "points" | "random" | "predicted" | "ply:PATH" | "ckpt:PATH".

    points: `init_from_points(scene.points, scene.point_colors)`; a scene without sparse points
        but with masks (e.g. NeRF-synthetic RGBA) uses `carve_points(scene, num_random)` instead;
        an error if it has neither;
    random: `init_random(scene_bounds(scene), num_random)`;
    ply:PATH: foresplat.io.read_ply; ckpt:PATH: foresplat.models.Predictor.from_checkpoint(PATH)
    predicting from `scene` (pass the context views); predicted = ckpt:default, the predictor shipped
    with the package. A predicted start may end with START_SUFFIXES: "predicted+foreground" drops
    the Gaussians of `background` (the refiner's; None = scene_background(scene), else black),
    "+consistent" keeps the depth-consistent ones, "+points" adds the scene's points.
    """
    base, words = split_start_suffixes(spec)
    if words and (base == "predicted" or base.startswith("ckpt:")):
        try:
            from foresplat.models import Predictor
            from foresplat.models.filters import DEFAULT_REL_TOL
        except ImportError as e:  # the models package is optional at this layer
            raise RuntimeError(f"--init {spec!r}: foresplat.models is not available ({e})") from e
        path = "default" if base == "predicted" else base[len("ckpt:"):]
        g = predict_on(Predictor.from_checkpoint(path), scene,
                       consistent=DEFAULT_REL_TOL if "consistent" in words else None,
                       foreground="foreground" in words,
                       background=background if background is not None else scene_background(scene))
        if "points" in words:
            g = Gaussians.cat([g, initialize("points", scene, num_random=num_random, seed=seed,
                                             sh_degree=g.sh_degree).to(g.means)])
        return g
    if spec == "predicted":
        spec = "ckpt:default"
    kind, _, arg = spec.partition(":")
    if kind == "points":
        if scene.points is not None and scene.points.shape[0] > 0:
            return init_from_points(scene.points, scene.point_colors, sh_degree=sh_degree)
        if scene.masks is not None:
            pts, cols = carve_points(scene, num_random, seed=seed)
            return init_from_points(pts, cols, sh_degree=sh_degree)
        raise ValueError(f"--init points: scene {scene.name!r} has neither sparse points nor masks "
                         "(use --init random, ply:PATH or ckpt:PATH)")
    if kind == "random":
        return init_random(scene_bounds(scene), num_random, seed=seed, sh_degree=sh_degree)
    if kind in ("ply", "ckpt") and not arg:
        raise ValueError(f"--init {spec!r}: expected {kind}:PATH")
    if kind == "ply":
        from foresplat.io.ply import check_gaussian_values, read_ply

        return check_gaussian_values(read_ply(Path(arg)), f"--init {spec}")
    if kind == "ckpt":
        try:
            from foresplat.models import Predictor
        except ImportError as e:  # the models package is optional at this layer
            raise RuntimeError(f"--init {spec!r}: foresplat.models is not available ({e})") from e
        return predict_on(Predictor.from_checkpoint(arg), scene)
    raise ValueError(f"--init {spec!r}: expected points, random, predicted[+consistent][+foreground][+points], "
                     "ply:PATH or ckpt:PATH[+...]")
