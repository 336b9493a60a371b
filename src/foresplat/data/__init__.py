"""Scenes: the Scene type, view splits, the synthetic generator and loaders for real data."""

from foresplat.data.loaders import detect_format, load_scene
from foresplat.data.scene import Scene, SceneSplit, split_views

__all__ = ["Scene", "SceneSplit", "split_views", "load_scene", "detect_format"]
