"""The refiner: functional Adam over Gaussians, the photometric loss, initialisations, `refine`."""

from foresplat.refine.adam import AdamState, adam_init, adam_update
from foresplat.refine.config import AdamLRs, RefineConfig, expon_lr
from foresplat.refine.init import (carve_points, init_from_points, init_random, initialize,
                                   knn_mean_sq_dist, scene_background, scene_bounds)
from foresplat.refine.loss import photometric_loss, psnr, ssim
from foresplat.refine.refiner import (RefineResult, Refiner, check_gaussians, drop_transparent, refine,
                                      view_metrics)

__all__ = [
    "AdamLRs", "AdamState", "RefineConfig", "RefineResult", "Refiner", "adam_init", "adam_update",
    "carve_points", "check_gaussians", "drop_transparent", "expon_lr", "init_from_points", "init_random",
    "initialize", "knn_mean_sq_dist", "photometric_loss", "psnr", "refine", "scene_background",
    "scene_bounds", "ssim", "view_metrics",
]
