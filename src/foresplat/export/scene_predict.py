"""Predict a scene's Gaussians with an exported model (onnxruntime), as `Predictor.predict` does.

    g0 = predict_scene_onnx(OnnxPredictor("model.onnx"), scene)      # Gaussians [N] (float32, CPU)
"""

from __future__ import annotations

import numpy as np
import torch

from foresplat.data.scene import Scene
from foresplat.export.runtime import OUTPUT_NAMES, OnnxPredictor
from foresplat.gaussians import Gaussians


def scene_inputs(scene: Scene) -> tuple[np.ndarray, ...]:
    """Scene (V views) -> float32 arrays images [1,V,H,W,3], viewmats [1,V,4,4], Ks [1,V,3,3], near [1], far [1]."""
    f = lambda t: t.detach().to("cpu", torch.float32).numpy()[None]  # noqa: E731
    return (f(scene.images), f(scene.cameras.viewmats), f(scene.cameras.Ks),
            np.array([scene.near], np.float32), np.array([scene.far], np.float32))


def predict_scene_onnx(runner: OnnxPredictor, scene: Scene) -> Gaussians:
    """Unbatched prediction from every view of `scene` (sizes multiples of runner.divisor) -> Gaussians [N]
    in the scene's world frame. As Predictor.predict, the graph runs in the scene's normalised frame
    (foresplat.data.normalize) and the Gaussians are mapped back."""
    from foresplat.data.normalize import SceneNormalization

    scene.validate()
    norm = SceneNormalization.of(scene)
    out = runner.run(*scene_inputs(norm.apply(scene)))
    g = Gaussians(*(torch.from_numpy(out[k][0]) for k in OUTPUT_NAMES))
    return norm.to_world(g)


class OnnxSceneModel:
    """An exported model with the scene-level surface `foresplat predict` uses (divisor, predict, parameters)."""

    def __init__(self, path, threads: int | None = None):
        self.runner = OnnxPredictor(path, threads)
        self.divisor = self.runner.divisor

    def predict(self, scene: Scene) -> Gaussians:
        """Gaussians [N] of every view of `scene` (see predict_scene_onnx)."""
        return predict_scene_onnx(self.runner, scene)

    def parameters(self):
        """No PyTorch parameters: the weights live in the onnxruntime session (memory estimates skip them)."""
        return iter(())

    def eval(self) -> "OnnxSceneModel":
        """No-op (an ONNX graph is always in inference mode)."""
        return self
