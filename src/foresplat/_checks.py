"""Small validation helpers shared by the core types: every error names the tensor and what was expected."""

from __future__ import annotations

from typing import Sequence

import torch


def check_tensor(
    name: str,
    value: object,
    trailing: Sequence[int | None],
    *,
    min_dims: int | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Checks that `value` is a floating tensor whose last dims are `trailing` (None = any size).

    Raises TypeError / ValueError naming `name`, the expected shape and what was found.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    want = "[..., " + ", ".join("*" if t is None else str(t) for t in trailing) + "]"
    nd = len(trailing) if min_dims is None else min_dims
    if value.dim() < nd:
        raise ValueError(f"{name}: expected shape {want}, got {list(value.shape)}")
    if trailing:
        tail = value.shape[value.dim() - len(trailing):]
        for got, exp in zip(tail, trailing):
            if exp is not None and got != exp:
                raise ValueError(f"{name}: expected shape {want}, got {list(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
    if finite and value.numel() > 0 and not bool(torch.isfinite(value.detach()).all()):
        bad = int((~torch.isfinite(value.detach())).sum())
        raise ValueError(f"{name}: contains {bad} NaN/inf value(s)")
    return value
