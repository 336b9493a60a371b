"""Scenes: the Scene type, view splits, the synthetic generator and loaders for real data."""

from foresplat.data.scene import Scene, SceneSplit, split_views

__all__ = ["Scene", "SceneSplit", "split_views"]
