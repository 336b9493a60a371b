"""Live refinement in the browser: `foresplat refine --view` pushes the Gaussians to a `Viewer` every
N steps with the step, the loss and the held-out PSNR, and (with --view-capture) records the browser's
frame of one view at each update."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from foresplat.data.scene import SceneSplit
from foresplat.gaussians import Gaussians


class LiveRefinement:
    """Streams a refinement to a Viewer (see module docstring). Close with `close(wait)`."""

    def __init__(self, split: SceneSplit, *, host: str = "127.0.0.1", port: int = 8080,
                 background: Sequence[float] | None = None, backend: str = "auto",
                 capture_dir: Path | None = None, connect_timeout: float = 120.0, title: str = "foresplat refine"):
        from foresplat.viewer.server import Viewer

        self.split = split
        self.backend = backend
        self.background = None if background is None else tuple(float(c) for c in background)
        self.viewer = Viewer(host, port, background=self.background or (0.0, 0.0, 0.0), backend=backend,
                             title=title)
        views, labels = self._all_views()
        self.viewer.set_views(views, labels)
        self.capture_dir = None if capture_dir is None else Path(capture_dir)
        self.capture_view = len(split.context_indices) if split.target.num_views else 0  # first target view
        self.frames: list[Path] = []
        print(f"foresplat refine: live view at {self.viewer.url}", flush=True)
        if self.capture_dir is not None:
            self.capture_dir.mkdir(parents=True, exist_ok=True)
            if not self.viewer.wait_for_client(connect_timeout):
                self.close(0)
                raise TimeoutError(f"--view-capture: no browser opened {self.viewer.url} "
                                   f"within {connect_timeout:.0f} s")

    def _all_views(self):
        """The context then the target views as one Scene, labelled with their scene indices."""
        from foresplat.data.scene import Scene

        ctx, tgt = self.split.context, self.split.target
        if tgt.num_views == 0:
            return ctx, [f"context {i}" for i in self.split.context_indices]
        import torch

        from foresplat.cameras import Cameras

        cams = Cameras(torch.cat([ctx.cameras.viewmats, tgt.cameras.viewmats]),
                       torch.cat([ctx.cameras.Ks, tgt.cameras.Ks]), ctx.width, ctx.height)
        views = Scene(images=torch.cat([ctx.images, tgt.images]), cameras=cams, name=ctx.name)
        labels = ([f"context {i}" for i in self.split.context_indices]
                  + [f"target {i}" for i in self.split.target_indices])
        return views, labels

    def update(self, step: int, total: int, g: Gaussians, loss: float | None) -> float | None:
        """Shows `g` after `step` of `total` steps with the loss and the held-out PSNR (returned; None
        without target views); writes the browser's frame when capturing."""
        from foresplat.refine.refiner import view_metrics

        psnr = None
        if self.split.target.num_views:
            m = view_metrics(g, self.split.target, backend=self.backend, background=self.background)
            psnr = sum(m["psnr"]) / len(m["psnr"])
        self.viewer.set_gaussians(g)
        parts = [f"**step {step}/{total}**", f"{g.num} Gaussians"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if psnr is not None:
            parts.append(f"held-out PSNR {psnr:.2f} dB")
        self.viewer.set_status(" · ".join(parts))
        if self.capture_dir is not None:
            from foresplat.commands.view import write_frame

            frame = self.viewer.capture(self.viewer.view_camera(self.capture_view), timeout=60.0)
            path = self.capture_dir / f"step_{step:05d}.png"
            write_frame(path, frame, {"step": step, "loss": loss, "heldout_psnr": psnr})
            self.frames.append(path)
        return psnr

    def close(self, wait: float | None) -> None:
        """Keeps the page open `wait` seconds (None: until Ctrl-C), then stops the server."""
        try:
            if wait is None:
                print(f"foresplat refine: done; the viewer stays at {self.viewer.url} until Ctrl-C", flush=True)
                while True:
                    time.sleep(0.5)
            end = time.monotonic() + max(0.0, wait)
            while time.monotonic() < end:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.viewer.close()
