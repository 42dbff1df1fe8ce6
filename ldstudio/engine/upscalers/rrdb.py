"""ESRGAN's RRDBNet in the original (old) key layout: `model.0`, `model.1.sub.*`, `model.3`, ...

The layout ESRGAN, BSRGAN and most community models (4x-UltraSharp, ...) are published in; the
newer basicsr layout (`conv_first`, `body.N.rdb1`, ...) is renamed to it on load
(core/models/upscalers.esrgan_old_keys). Models trained for ×2/×1 read a pixel-unshuffled input
(Real-ESRGAN x2plus): padded to a multiple, unshuffled, and the result cropped back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv(cin: int, cout: int, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1)]
    if act:
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class _RDB(nn.Module):
    def __init__(self, nf: int, gc: int = 32) -> None:
        super().__init__()
        self.conv1 = _conv(nf, gc)
        self.conv2 = _conv(nf + gc, gc)
        self.conv3 = _conv(nf + 2 * gc, gc)
        self.conv4 = _conv(nf + 3 * gc, gc)
        self.conv5 = _conv(nf + 4 * gc, nf, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, nf: int) -> None:
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = _RDB(nf), _RDB(nf), _RDB(nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class _Shortcut(nn.Module):
    def __init__(self, sub: nn.Module) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class _Nearest(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")


class RRDBNet(nn.Module):
    def __init__(
        self,
        in_nc: int = 3,
        out_nc: int = 3,
        features: int = 64,
        blocks: int = 23,
        ups: int = 2,
        unshuffle: int = 1,
    ) -> None:
        super().__init__()
        self.unshuffle = unshuffle
        self.scale = 2**ups // unshuffle
        trunk: list[nn.Module] = [_RRDB(features) for _ in range(blocks)]
        trunk.append(nn.Conv2d(features, features, 3, 1, 1))
        layers: list[nn.Module] = [nn.Conv2d(in_nc, features, 3, 1, 1)]
        layers.append(_Shortcut(nn.Sequential(*trunk)))
        for _ in range(ups):  # model.{3n-1} upsample, model.{3n} conv, model.{3n+1} lrelu
            layers += [_Nearest(), nn.Conv2d(features, features, 3, 1, 1)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Conv2d(features, features, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(features, out_nc, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle == 1:
            return self.model(x)
        h, w = x.shape[-2:]
        s = self.unshuffle
        x = F.pad(x, (0, (-w) % s, 0, (-h) % s), mode="reflect")
        out = self.model(F.pixel_unshuffle(x, s))
        return out[..., : h * self.scale, : w * self.scale]
