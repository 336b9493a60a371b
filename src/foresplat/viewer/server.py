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
from foresplat.viewer.splats import pinhole_for_fov, quat_to_matrix, splat_arrays, viser_poses

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
        self._ready: set[int] = set()  # clients whose connect handler (it moves their camera) has run

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
                max_tries: int = 40, full_size: bool = True) -> Frame:
        """The first connected browser's frame from `camera`'s pose and vertical fov (one camera), taken
        once `settle` consecutive frames agree (viser sorts splats asynchronously).

        The browser's own camera is moved there first and the frame has the page's canvas size (full_size;
        else `camera.height` pixels high with the page's aspect ratio): viser 1.1.1 draws splats in a capture
        with the page camera's projection and, after the first capture, sizes them for the page's viewport, so
        a frame of another fov, aspect or size would be distorted. `Frame.camera()` is the camera it shows
        (same pose and vertical fov, square pixels, centred principal point).
        Raises TimeoutError when no browser is connected or sends no frame within `timeout` seconds."""
        if not self.wait_for_client(timeout):
            raise TimeoutError(f"Viewer.capture: no browser connected to {self.url} within {timeout:.0f} s")
        end = time.monotonic() + timeout
        client = next(iter(self.server.get_clients().values()))
        while client.client_id not in self._ready and time.monotonic() < end:
            time.sleep(0.05)  # its connect handler moves the page camera: let it run first
        pose = viser_poses(camera)[0]
        h = int(camera.height)

        def move_page() -> Any:
            """Moves the page camera to `pose`; returns the handle state a page report will replace (None when
            the page's camera already was there: the page then sends nothing back)."""
            st = client.camera._state
            changed = not (np.allclose(st.fov, pose.fov_y) and np.allclose(st.position, pose.position))
            with client.atomic():
                # the camera's own up (-y, OpenCV) as the orbit up: the page then keeps the pose's roll, so its
                # rotation (which places the splats in a capture) equals the capture's
                client.camera.up_direction = -quat_to_matrix(torch.tensor(pose.wxyz))[:, 1].numpy()
                client.camera.wxyz = pose.wxyz
                client.camera.position = pose.position
                client.camera.fov = pose.fov_y
            return client.camera._state if changed else None

        hidden = self._hide_frustums()  # a frame of the splats alone
        try:
            prev, same, rgba, w = None, 0, None, 0
            waiting, moved_at = move_page(), time.monotonic()
            for _ in range(max_tries * 20):
                left = end - time.monotonic()
                if left <= 0:
                    break
                # The page must have REPORTED its camera at the pose (the handle's setters change its state at
                # once; a page report replaces the state object); another callback (a new page's "go to view
                # 0") may move it again. The splats' projection in a capture is the page camera's.
                if waiting is not None and client.camera._state is waiting and time.monotonic() - moved_at < 2.0:
                    time.sleep(0.05)
                    continue
                if not self._page_camera_at(client, pose):
                    waiting, moved_at = move_page(), time.monotonic()
                    prev, same = None, 0
                    time.sleep(0.05)
                    continue
                waiting = None
                if full_size:  # the page's canvas size: viser sizes splats in a capture for the page's viewport
                    w, h = int(client.camera.image_width), int(client.camera.image_height)
                else:
                    w = max(1, round(h * client.camera.aspect))  # the page's aspect (its canvas may still resize)
                rgba = client.get_render(h, w, wxyz=pose.wxyz, position=pose.position, fov=pose.fov_y,
                                         transport_format="png", timeout=left)
                if prev is not None and prev.shape == rgba.shape and np.abs(rgba.astype(np.int16) - prev).mean() < 0.25:
                    same += 1
                    if same >= settle - 1:
                        if self._page_camera_at(client, pose):
                            break
                        rgba, same = None, 0  # the page camera moved meanwhile: start again
                else:
                    same = 0
                prev = rgba.astype(np.int16)
                time.sleep(interval)
        finally:
            self._update_frustums()
        if rgba is None:
            raise TimeoutError(f"Viewer.capture: the browser sent no frame within {timeout:.0f} s")
        return self._frame(rgba, camera.viewmats[0], w, h, pose.fov_y)

    @staticmethod
    def _page_camera_at(client: Any, pose: Any) -> bool:
        """True when the page has reported its camera at `pose`'s position and fov (its orbit controls may
        re-derive the rotation, e.g. without roll; the capture's rotation is sent with the request)."""
        cam = client.camera
        if cam._state.update_timestamp == 0.0:
            return False
        scale = 1.0 + float(np.abs(pose.position).max())
        return (abs(cam.fov - pose.fov_y) < 1e-4
                and float(np.abs(cam.position - pose.position).max()) < 1e-4 * scale)

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

    def _hide_frustums(self) -> bool:
        """Hides every frustum for a capture and gives the page time to apply it (scene updates travel apart
        from a client's render requests); True when any was visible."""
        visible = any(f.visible for f in self._frustums)
        self._update_frustums(hide_all=True)
        if visible:
            self.server.flush()
            time.sleep(0.5)
        return visible

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
        try:
            self.go_to(self._selected() if self._selected() is not None else 0, client)
        finally:
            self._ready.add(client.client_id)

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
