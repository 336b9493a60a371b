"""Cache folders kept inside the active environment (venv), not $HOME, so CI and fresh machines agree."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_root() -> Path:
    """`<sys.prefix>/var/foresplat`, created on demand (overridable with FORESPLAT_CACHE)."""
    root = Path(os.environ.get("FORESPLAT_CACHE", Path(sys.prefix) / "var" / "foresplat"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def configure_caches() -> None:
    """Points TORCH_EXTENSIONS_DIR and MPLCONFIGDIR at the cache root unless the user set them."""
    root = cache_root()
    for var, sub in (("TORCH_EXTENSIONS_DIR", "torch_extensions"), ("MPLCONFIGDIR", "matplotlib")):
        if not os.environ.get(var):
            path = root / sub
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)
