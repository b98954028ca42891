"""A small DCGAN (Radford et al. 2016) for any C in {1, 3} and any size 8..64: a linear projection
of z to a 3x3 or 4x4 map, then transposed convolutions that double the side (kernel 4) or double it
minus one (kernel 3), so 28 = 4 -> 7 -> 14 -> 28 and 32 = 4 -> 8 -> 16 -> 32 need no cropping."""

from __future__ import annotations

import torch.nn as nn

from ..errors import GradinvError
from .generator import Generator

MIN_SIZE, MAX_SIZE = 8, 64


def side_schedule(image_size: int) -> list[int]:
    """Sides from the first feature map to the image: halve (rounding up) until at most 4."""
    if not isinstance(image_size, int) or not MIN_SIZE <= image_size <= MAX_SIZE:
        raise GradinvError(
            f"dcgan generates images of side {MIN_SIZE}..{MAX_SIZE}, got {image_size!r} "
            "(resize the data with --image-size)"
        )
    sides = [image_size]
    while sides[-1] > 4:
        sides.append((sides[-1] + 1) // 2)
    return sides[::-1]


def check_shape(channels: int, image_size: int) -> list[int]:
    if channels not in (1, 3):
        raise GradinvError(f"dcgan generates 1- or 3-channel images, got channels={channels!r}")
    return side_schedule(image_size)


def _widths(n_up: int, width: int) -> list[int]:
    """Channels of each feature map: `width` at the last one before the image, doubling backwards."""
    return [width * 2 ** (n_up - 1 - i) for i in range(n_up)]


def _up(c_in: int, c_out: int, side_in: int, side_out: int) -> nn.ConvTranspose2d:
    kernel = 4 if side_out == 2 * side_in else 3  # out = 2*in - 2 + kernel - 2 (stride 2, pad 1)
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=1, bias=False)


class DCGANGenerator(Generator):
    """stages[0]: z -> (c0, s0, s0); stages[1..]: upsampling blocks; the last ends in tanh."""

    def __init__(
        self, channels: int = 1, image_size: int = 28, latent_dim: int = 100, width: int = 16
    ) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise GradinvError(
                f"dcgan: latent_dim and width must be >= 1, got {latent_dim}, {width}"
            )
        sides = check_shape(channels, image_size)
        widths = _widths(len(sides) - 1, width)
        self.latent_dim = latent_dim
        self.output_shape = (channels, image_size, image_size)
        s0, c0 = sides[0], widths[0]
        stages = [
            nn.Sequential(
                nn.Linear(latent_dim, c0 * s0 * s0, bias=False),
                nn.Unflatten(1, (c0, s0, s0)),
                nn.BatchNorm2d(c0),
                nn.ReLU(inplace=True),
            )
        ]
        for i in range(1, len(widths)):
            stages.append(
                nn.Sequential(
                    _up(widths[i - 1], widths[i], sides[i - 1], sides[i]),
                    nn.BatchNorm2d(widths[i]),
                    nn.ReLU(inplace=True),
                )
            )
        stages.append(nn.Sequential(_up(widths[-1], channels, sides[-2], sides[-1]), nn.Tanh()))
        self.stages = nn.ModuleList(stages)
        _init(self)


class DCGANDiscriminator(nn.Module):
    """Strided 4x4 convolutions halving the side down to at most 4, then one linear logit."""

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 16) -> None:
        super().__init__()
        sides = check_shape(channels, image_size)[::-1]
        layers: list[nn.Module] = []
        c_in, side = channels, image_size
        for i, c_out in enumerate(_widths(len(sides) - 1, width)[::-1]):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=i == 0))
            if i > 0:  # DCGAN: no BatchNorm on the discriminator's input layer
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, side = c_out, side // 2
        layers += [nn.Flatten(), nn.Linear(c_in * side * side, 1)]
        self.net = nn.Sequential(*layers)
        _init(self)

    def forward(self, x):  # noqa: ANN001, ANN201 - nn.Module API
        return self.net(x).squeeze(1)


def _init(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
