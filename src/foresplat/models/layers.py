"""Small convolutional building blocks shared by the backbones and the Gaussian head.

All blocks take and return NCHW feature maps. GroupNorm (never BatchNorm) keeps the output of a
scene independent of the other scenes in the batch and of train/eval mode, and leaves no buffers
for DistributedDataParallel to synchronise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (the largest divisor of `channels` that is <= 8)."""
    groups = max(g for g in range(1, 9) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ConvNormAct(nn.Sequential):
    """conv k x k (no bias) -> GroupNorm -> ReLU: [N, cin, H, W] -> [N, cout, H/stride, W/stride]."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         group_norm(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Two 3x3 conv + GroupNorm layers with an identity skip: [N, C, H, W] -> [N, C, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm1 = group_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm2 = group_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(x + y)


class Stage(nn.Sequential):
    """ConvNormAct(cin -> cout, stride) followed by `blocks` ResBlocks."""

    def __init__(self, cin: int, cout: int, stride: int = 1, blocks: int = 1):
        super().__init__(ConvNormAct(cin, cout, 3, stride), *(ResBlock(cout) for _ in range(blocks)))


class UNet(nn.Module):
    """A light U-Net: [N, cin, H, W] -> [N, channels, H, W], H and W divisible by 2^(levels-1).

    Level l works at resolution H / 2^l with channels * 2^l features; the decoder upsamples
    bilinearly and fuses the encoder's skip connection with a 3x3 conv.
    """

    def __init__(self, cin: int, channels: int, levels: int = 2, blocks: int = 1):
        super().__init__()
        if levels < 1:
            raise ValueError(f"UNet: levels must be >= 1, got {levels}")
        widths = [channels * 2**level for level in range(levels)]
        self.down = nn.ModuleList([Stage(cin, widths[0], 1, blocks)])
        self.down.extend(Stage(widths[i - 1], widths[i], 2, blocks) for i in range(1, levels))
        self.up = nn.ModuleList(ConvNormAct(widths[i] + widths[i - 1], widths[i - 1])
                                for i in range(levels - 1, 0, -1))
        self.divisor = 2 ** (levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for fuse in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, skip], dim=1))
        return x


def small_init_(conv: nn.Conv2d, std: float = 1e-3) -> nn.Conv2d:
    """Initialises an output conv with tiny weights and zero bias, so a fresh layer starts near 0
    (but every parameter still receives a gradient)."""
    nn.init.normal_(conv.weight, std=std)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv
