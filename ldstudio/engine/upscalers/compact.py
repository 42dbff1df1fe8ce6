"""SRVGGNetCompact ("Compact"), the small Real-ESRGAN network, in its published key layout.

A plain conv/PReLU stack at the input resolution, a pixel shuffle, and the nearest-neighbour
enlarged input added back: the network only learns the residual. `body.{i}` indices match the
Real-ESRGAN release (and spandrel's loader), so a state dict moves between them unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Compact(nn.Module):
    def __init__(
        self, in_nc: int = 3, out_nc: int = 3, features: int = 64, convs: int = 16, scale: int = 4
    ) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(in_nc, features, 3, 1, 1), nn.PReLU(features)]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, 1, 1), nn.PReLU(features)]
        layers.append(nn.Conv2d(features, out_nc * scale * scale, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsampler(self.body(x))
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
