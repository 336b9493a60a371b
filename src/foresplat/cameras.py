"""`Cameras`: pinhole cameras in the OpenCV convention.

    viewmats [..., C, 4, 4]  world-to-camera; camera axes x right, y down, z forward
    Ks       [..., C, 3, 3]  pixel intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]];
                             pixel (u, v) has its centre at (u + 0.5, v + 0.5), so a full-image
                             principal point is (W/2, H/2)
    width, height            image size in pixels, shared by all cameras
A pixel x_pix = K (R X + t) / z for a world point X. Converters from other conventions
(OpenGL/Blender, LLFF, PyTorch3D, NED) live with the loaders that need them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from foresplat._checks import check_tensor

OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def c2w_opengl_to_viewmat(c2w: torch.Tensor) -> torch.Tensor:
    """OpenGL/Blender camera-to-world [..., 4, 4] (camera looks along -z, y up) -> OpenCV world-to-camera."""
    c2w_cv = c2w @ OPENGL_TO_OPENCV.to(c2w)
    return torch.linalg.inv(c2w_cv)


def intrinsics_matrix(fx, fy, cx, cy, dtype=torch.float32) -> torch.Tensor:
    """[3, 3] pixel intrinsics from focal lengths and principal point (pixels)."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera [..., 4, 4] for cameras at `eye` [..., 3] looking at `target` [..., 3].

    `up` [3] is the world up direction; the camera's y axis points away from it (y down).
    """
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.linalg.cross((-up).expand_as(z), z, dim=-1), dim=-1)
    y = torch.linalg.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=-2)  # rows = camera axes in world coordinates
    view = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    view[..., :3, :3] = R
    view[..., :3, 3] = -(R @ eye.unsqueeze(-1)).squeeze(-1)
    view[..., 3, 3] = 1.0
    return view


@dataclass
class Cameras:
    """A set of pinhole cameras sharing one image size (see module docstring)."""

    viewmats: torch.Tensor
    Ks: torch.Tensor
    width: int
    height: int

    @property
    def num(self) -> int:
        """Number of cameras C."""
        return self.viewmats.shape[-3]

    @property
    def device(self) -> torch.device:
        return self.viewmats.device

    def validate(self, name: str = "cameras") -> "Cameras":
        """Checks shapes, finiteness, image size and invertibility; raises naming the field."""
        check_tensor(f"{name}.viewmats", self.viewmats, (None, 4, 4))
        check_tensor(f"{name}.Ks", self.Ks, (None, 3, 3))
        if self.viewmats.shape[:-2] != self.Ks.shape[:-2]:
            raise ValueError(f"{name}: viewmats {list(self.viewmats.shape)} and Ks "
                             f"{list(self.Ks.shape)} disagree on the number of cameras")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"{name}: image size must be positive, got {self.width}x{self.height}")
        v = self.viewmats.detach().double()
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=v.dtype, device=v.device)
        if not torch.allclose(v[..., 3, :], bottom.expand_as(v[..., 3, :]), atol=1e-6):
            raise ValueError(f"{name}.viewmats: last row must be [0, 0, 0, 1]")
        det = torch.linalg.det(v[..., :3, :3])
        if bool((det.abs() < 1e-8).any()):
            raise ValueError(f"{name}.viewmats: a rotation block is singular (det ~ 0)")
        if bool((det < 0).any()):
            raise ValueError(f"{name}.viewmats: a rotation block is a reflection (det < 0); "
                             "expected a right-handed OpenCV world-to-camera matrix")
        k = self.Ks.detach().double()
        if bool((k[..., 0, 0] <= 0).any()) or bool((k[..., 1, 1] <= 0).any()):
            raise ValueError(f"{name}.Ks: focal lengths fx, fy must be positive")
        return self

    def camtoworlds(self) -> torch.Tensor:
        """OpenCV camera-to-world [..., C, 4, 4]."""
        return torch.linalg.inv(self.viewmats)

    def centers(self) -> torch.Tensor:
        """Camera centres in world coordinates [..., C, 3]."""
        R = self.viewmats[..., :3, :3]
        t = self.viewmats[..., :3, 3:]
        return -(R.transpose(-1, -2) @ t).squeeze(-1)

    def index(self, idx) -> "Cameras":
        """Subset of cameras along C (int list, slice, or index tensor)."""
        if isinstance(idx, int):
            idx = [idx]
        return Cameras(self.viewmats[..., idx, :, :], self.Ks[..., idx, :, :], self.width, self.height)

    def to(self, *args, **kwargs) -> "Cameras":
        return Cameras(self.viewmats.to(*args, **kwargs), self.Ks.to(*args, **kwargs), self.width, self.height)

    def rescaled(self, width: int, height: int) -> "Cameras":
        """Cameras for the same views resized to width x height (intrinsics scaled per axis)."""
        sx, sy = width / self.width, height / self.height
        K = self.Ks.clone()
        K[..., 0, :] *= sx
        K[..., 1, :] *= sy
        return Cameras(self.viewmats, K, int(width), int(height))

    def cropped(self, left: int, top: int, width: int, height: int) -> "Cameras":
        """Cameras for the crop [top:top+height, left:left+width] of the images."""
        K = self.Ks.clone()
        K[..., 0, 2] -= left
        K[..., 1, 2] -= top
        return Cameras(self.viewmats, K, int(width), int(height))

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projects world points [P, 3] into every camera: pixels [C, P, 2] and depths z [C, P]."""
        R = self.viewmats[..., :3, :3]
        t = self.viewmats[..., :3, 3]
        cam = points @ R.transpose(-1, -2) + t.unsqueeze(-2)  # [C, P, 3]
        z = cam[..., 2]
        uv = cam @ self.Ks.transpose(-1, -2)  # [C, P, 3]
        return uv[..., :2] / uv[..., 2:].clamp(min=1e-12), z
