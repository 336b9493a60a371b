"""`Viewer`: a viser server showing Gaussians, a scene's cameras and a ground-truth / render pair.

viser is an optional extra (`pip install "foresplat[viewer]"`), imported only here, lazily.
The server binds 127.0.0.1 unless another host is asked for (then a warning is printed).
Thread model: viser calls the GUI callbacks on its own threads; `set_gaussians` / `set_status`
may be called from the main thread (e.g. a refinement loop) at any time.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from foresplat.cameras import Cameras
from foresplat.data.scene import Scene
from foresplat.gaussians import Gaussians
from foresplat.viewer.splats import pinhole_for_fov, splat_arrays, viser_poses

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class ViewerUnavailableError(ValueError):
    """The optional viewer dependency (viser) is not installed."""


def require_viser() -> Any:
    """Imports and returns the viser module, or raises ViewerUnavailableError saying how to install it."""
    try:
        import viser
    except ImportError as e:
        raise ViewerUnavailableError(
            f"the viewer needs the optional package viser ({e}); install it with "
            "pip install \"foresplat[viewer]\" (or pip install viser==1.1.1)") from None
    return viser


@dataclass
class Frame:
    """A frame captured from a connected browser: the image and the camera it was rendered from."""

    image: np.ndarray        # [H, W, 3] uint8, composited on the viewer's background
    alpha: np.ndarray        # [H, W] uint8 (the page's coverage; 0 = background)
    viewmat: torch.Tensor    # [4, 4] OpenCV world-to-camera
    width: int
    height: int
    fov_y: float             # vertical field of view, radians (square pixels, centred principal point)

    def camera(self) -> Cameras:
        """The pinhole camera the frame shows (intrinsics from the frame size and fov_y)."""
        return pinhole_for_fov(self.viewmat, self.width, self.height, self.fov_y)

    def meta(self) -> dict:
        """JSON-ready description of the camera."""
        return {"width": self.width, "height": self.height, "fov_y": self.fov_y,
                "viewmat": self.viewmat.tolist()}


def _thumbnail(image: torch.Tensor, max_width: int = 160) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> uint8 [h, w, 3] at most max_width wide."""
    from PIL import Image

    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    h, w = arr.shape[:2]
    if w <= max_width:
        return arr
    return np.asarray(Image.fromarray(arr).resize((max_width, max(1, round(h * max_width / w))), Image.BILINEAR))


class Viewer:
    """A running viser server (see module docstring). Stop it with `close()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, background: Sequence[float] = (0.0, 0.0, 0.0),
                 backend: str = "auto", title: str = "foresplat"):
        viser = require_viser()
        if host not in LOCAL_HOSTS:
            print(f"foresplat viewer: warning: serving on {host}; anyone who can reach this machine on the port "
                  "can see the scene (use the default 127.0.0.1 to keep it local)", file=sys.stderr)
        self.background = tuple(float(c) for c in background)
        self.backend = backend
        self._lock = threading.Lock()
        self._gaussians: Gaussians | None = None
        self._views: Scene | None = None
        self._labels: list[str] = []
        self._frustums: list[Any] = []
        import logging

        # a browser that opens and drops a connection makes websockets log a traceback; not an error here
        logging.getLogger("websockets.server").setLevel(logging.CRITICAL)
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.host = host
        self.port = int(self.server.get_port())
        self.server.gui.configure_theme(show_share_button=False)
        self.server.gui.add_markdown(f"**{title}**")
        self._status = self.server.gui.add_markdown("no Gaussians yet")
        self._show_cameras = self.server.gui.add_checkbox("show cameras", True)
        self._view_select = self.server.gui.add_dropdown("view", ("(none)",), initial_value="(none)")
        self._go = self.server.gui.add_button("go to camera")
        self._gt = self.server.gui.add_image(np.zeros((8, 8, 3), np.uint8), label="ground truth")
        self._render = self.server.gui.add_image(np.zeros((8, 8, 3), np.uint8), label="render (foresplat)")
        self._go.on_click(lambda event: self.go_to(self._selected(), event.client))
        self._view_select.on_update(lambda _: self._show_view(self._selected()))
        self._show_cameras.on_update(lambda _: self._update_frustums())
        self.server.on_client_connect(self._on_connect)
        self._current: int | None = None  # the view the cameras were last moved to (its frustum is hidden)

    # ---- public API ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """http://HOST:PORT of the page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def set_gaussians(self, g: Gaussians) -> None:
        """Shows `g` (unbatched), replacing the previous splats; refreshes the render of the chosen view."""
        g = g.detach().to(device="cpu", dtype=torch.float32).clone()
        a = splat_arrays(g)
        with self._lock:
            self._gaussians = g
        self.server.scene.add_gaussian_splats("/splats", centers=a.centers, covariances=a.covariances,
                                              rgbs=a.rgbs, opacities=a.opacities)
        self._show_view(self._selected(), gt=False)

    def set_views(self, scene: Scene, labels: Sequence[str] | None = None) -> None:
        """Adds the scene's cameras as frustums textured with their images (click one to go there),
        fills the view selector, and sets the world up direction from the cameras."""
        labels = list(labels) if labels is not None else [f"view {i}" for i in range(scene.num_views)]
        if len(labels) != scene.num_views:
            raise ValueError(f"Viewer.set_views: {len(labels)} labels for {scene.num_views} views")
        with self._lock:
            self._views, self._labels = scene, labels
        poses = viser_poses(scene.cameras)
        centers = scene.cameras.centers().detach().cpu().double()
        spread = float((centers - centers.mean(0)).norm(dim=-1).max()) if scene.num_views > 1 else 1.0
        scale = max(0.05 * spread, 1e-3)
        c2w = torch.linalg.inv(scene.cameras.viewmats.detach().cpu().double())
        up = -c2w[:, :3, 1].mean(0)  # OpenCV y points down
        if float(up.norm()) > 1e-6:
            self.server.scene.set_up_direction(tuple((up / up.norm()).tolist()))
        for f in self._frustums:
            f.remove()
        self._frustums = []
        for i, (pose, label) in enumerate(zip(poses, labels)):
            frustum = self.server.scene.add_camera_frustum(
                f"/cameras/{i:03d}", fov=pose.fov_y, aspect=pose.aspect, scale=scale,
                thickness=0.02 * scale, image=_thumbnail(scene.images[i]), wxyz=pose.wxyz, position=pose.position,
                color=(255, 140, 0) if label.startswith("target") else (40, 120, 255))
            frustum.on_click(lambda event, i=i: self._select(i, event.client))
            self._frustums.append(frustum)
        self._view_select.options = tuple(labels)
        self._view_select.value = labels[0]
        self._show_view(0)

    def set_status(self, text: str) -> None:
        """Replaces the status line (Markdown) of the GUI."""
        self._status.content = text

    def go_to(self, index: int | None, client: Any = None) -> None:
        """Moves `client`'s camera (every client when None) to scene view `index`."""
        if index is None or self._views is None:
            return
        pose = viser_poses(self._views.cameras.index([index]))[0]
        self._current = index
        self._update_frustums()
        clients = [client] if client is not None else list(self.server.get_clients().values())
        for c in clients:
            with c.atomic():
                c.camera.wxyz = pose.wxyz
                c.camera.position = pose.position
                c.camera.fov = pose.fov_y

    def wait_for_client(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for a browser to connect; True when one is connected."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.server.get_clients():
                return True
            time.sleep(0.05)
        return bool(self.server.get_clients())

    def view_camera(self, index: int) -> Cameras:
        """The scene camera `index` (raises ValueError when no views are shown)."""
        if self._views is None:
            raise ValueError("Viewer: no scene views to take a camera from")
        return self._views.cameras.index([index])

    def capture(self, camera: Cameras, *, timeout: float = 20.0, settle: int = 3, interval: float = 0.25,
                max_tries: int = 40) -> Frame:
        """The first connected browser's frame from `camera`'s pose and vertical fov (one camera), taken
        once `settle` consecutive frames agree (viser sorts splats asynchronously).

        The browser's own camera is moved there first and the frame is `camera.height` pixels high with
        the page's aspect ratio: viser 1.1.1 draws splats in a capture with the page camera's projection,
        so a frame of another fov or aspect would be distorted. `Frame.camera()` is the camera it shows.
        Raises TimeoutError when no browser is connected or sends no frame within `timeout` seconds."""
        if not self.wait_for_client(timeout):
            raise TimeoutError(f"Viewer.capture: no browser connected to {self.url} within {timeout:.0f} s")
        end = time.monotonic() + timeout
        client = next(iter(self.server.get_clients().values()))
        pose = viser_poses(camera)[0]
        with client.atomic():
            client.camera.wxyz = pose.wxyz
            client.camera.position = pose.position
            client.camera.fov = pose.fov_y
        while time.monotonic() < end:  # the page reports its camera (and canvas size) back
            state = client.camera._state
            if state.update_timestamp != 0.0 and abs(client.camera.fov - pose.fov_y) < 1e-4:
                break
            time.sleep(0.05)
        aspect = client.camera.aspect if client.camera._state.update_timestamp != 0.0 else camera.width / camera.height
        h = int(camera.height)
        w = max(1, round(h * aspect))
        self._update_frustums(hide_all=True)  # a frame of the splats alone
        try:
            prev, same = None, 0
            for _ in range(max_tries):
                left = end - time.monotonic()
                if left <= 0:
                    break
                rgba = client.get_render(h, w, wxyz=pose.wxyz, position=pose.position, fov=pose.fov_y,
                                         transport_format="png", timeout=left)
                if prev is not None and np.abs(rgba.astype(np.int16) - prev).mean() < 0.25:
                    same += 1
                    if same >= settle - 1:
                        break
                else:
                    same = 0
                prev = rgba.astype(np.int16)
                time.sleep(interval)
        finally:
            self._update_frustums()
        if prev is None:
            raise TimeoutError(f"Viewer.capture: the browser sent no frame within {timeout:.0f} s")
        return self._frame(rgba, camera.viewmats[0], w, h, pose.fov_y)

    def close(self) -> None:
        """Stops the server (idempotent)."""
        try:
            self.server.stop()
        except Exception:  # already stopped
            pass

    # ---- internals ----------------------------------------------------------------------------
    def _frame(self, rgba: np.ndarray, viewmat: torch.Tensor, width: int, height: int, fov_y: float) -> Frame:
        """RGBA uint8 [H, W, 4] -> a Frame composited on the background (alpha is straight, not premultiplied)."""
        rgb = rgba[..., :3].astype(np.float32) / 255.0
        a = rgba[..., 3:4].astype(np.float32) / 255.0 if rgba.shape[-1] == 4 else np.ones_like(rgb[..., :1])
        bg = np.asarray(self.background, np.float32)
        out = rgb * a + bg * (1.0 - a)
        return Frame(image=(out * 255 + 0.5).clip(0, 255).astype(np.uint8), alpha=(a[..., 0] * 255).astype(np.uint8),
                     viewmat=viewmat.detach().cpu().float(), width=width, height=height, fov_y=fov_y)

    def _update_frustums(self, hide_all: bool = False) -> None:
        """Shows the camera frustums (if asked) except the one the view was moved to (it would fill the view)."""
        show = bool(self._show_cameras.value) and not hide_all
        for i, f in enumerate(self._frustums):
            f.visible = show and i != self._current

    def _selected(self) -> int | None:
        with self._lock:
            labels = self._labels
        value = self._view_select.value
        return labels.index(value) if value in labels else None

    def _select(self, index: int, client: Any) -> None:
        self._view_select.value = self._labels[index]
        self.go_to(index, client)

    def _on_connect(self, client: Any) -> None:
        self.go_to(self._selected() if self._selected() is not None else 0, client)

    def _show_view(self, index: int | None, gt: bool = True) -> None:
        """Shows view `index`'s ground truth and foresplat's render of the current Gaussians from it."""
        with self._lock:
            views, g = self._views, self._gaussians
        if index is None or views is None:
            return
        if gt:
            self._gt.image = _thumbnail(views.images[index], 320)
        if g is None:
            return
        from foresplat.render import render

        with torch.no_grad():
            cam = views.cameras.index([index]).to(device="cpu", dtype=torch.float32)
            bg = torch.tensor(self.background, dtype=torch.float32)
            colors = render(g, cam, backgrounds=bg.expand(1, 3), backend=self.backend).colors[0]
        self._render.image = _thumbnail(colors, 320)
