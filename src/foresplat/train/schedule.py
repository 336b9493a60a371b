"""Learning-rate schedule: linear warm-up, then cosine decay to lr_min_ratio x lr (a pure function of the step)."""

from __future__ import annotations

import math


def lr_at(iteration: int, lr: float, iterations: int, warmup: int, lr_min_ratio: float) -> float:
    """Learning rate of optimizer step `iteration` (0-based) of a run of `iterations` steps.

    Steps 0..warmup-1 ramp linearly to lr ((i + 1) / warmup); the rest follow a half cosine from lr
    down to lr_min_ratio * lr, reached at the last step. Being stateless, resuming needs no
    scheduler state.
    """
    if iteration < warmup:
        return lr * (iteration + 1) / warmup
    span = max(iterations - 1 - warmup, 1)
    t = min(max((iteration - warmup) / span, 0.0), 1.0)
    return lr * (lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
