"""``UNet3D``: a 3D segmentation network around a transferred encoder (a 2D or Cross-D backbone made 3D)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossd.errors import SettingsError
from crossd.nn.crossd_conv import CrossDConv

DECODER_CHANNELS = (256, 128, 64, 32, 16)
_RESNET_STAGES = (("conv1", "bn1", "relu"), ("maxpool", "layer1"), ("layer2",), ("layer3",), ("layer4",))


def encoder_stages(encoder: nn.Module) -> list[tuple[str, ...]]:
    """Module names of each encoder stage, shallow to deep.

    torchvision ResNets: ``conv1+bn1+relu`` (stride 2), ``maxpool+layer1`` (4), ``layer2`` (8), ``layer3`` (16),
    ``layer4`` (32). Models with a ``features`` ``nn.Sequential`` (crossd's ``SmallCNN``): one stage per child.
    """
    if all(hasattr(encoder, name) for stage in _RESNET_STAGES for name in stage):
        return [tuple(stage) for stage in _RESNET_STAGES]
    features = getattr(encoder, "features", None)
    if isinstance(features, nn.Sequential):
        return [(f"features.{name}",) for name, _ in features.named_children()]
    raise SettingsError(
        f"{type(encoder).__name__} has no stages crossd can find: expected a torchvision ResNet layout "
        "(conv1, bn1, relu, maxpool, layer1..layer4) or a 'features' nn.Sequential; give stages=[...] instead",
        field="encoder",
    )


def _stage_channels(stage: nn.Module, name: str) -> int:
    convs = [m for m in stage.modules() if isinstance(getattr(m, "out_channels", None), int)]
    if not convs:
        raise SettingsError(f"stage {name} has no convolution to read its output channels from", field="encoder")
    return int(convs[-1].out_channels)


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet3D(nn.Module):
    """A U-Net whose encoder is a 3D backbone from :func:`crossd.to_3d`, with a 3D decoder and skip connections.

    Each decoder block up-samples (trilinear) to the next shallower encoder stage's size, concatenates that
    stage's output and applies two ``Conv3d 3^3 -> BatchNorm3d -> ReLU``; a last block at input resolution and a
    ``1^3`` convolution give the logits. Any input size works (sizes are matched by interpolation). The
    encoder's classifier (``fc``/``avgpool``/``classifier``) is not used.

    Args:
        encoder: a 3D backbone (e.g. ``to_3d(resnet18(), init="i3d")`` or ``to_3d(crossd_model, init="crossd")``).
        out_channels: number of classes (logits per voxel).
        decoder_channels: widths of the decoder blocks, deepest first (one per encoder stage; trimmed).
        stages: module names per encoder stage, shallow to deep (default: :func:`encoder_stages`).

    Shapes: input ``(N, C_in, D, H, W)`` with ``C_in`` the encoder's input channels -> ``(N, out_channels, D, H, W)``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        out_channels: int,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
        stages: Sequence[Sequence[str]] | None = None,
    ):
        super().__init__()
        flat = [n for n, m in encoder.named_modules() if isinstance(m, (nn.Conv2d, CrossDConv, nn.ConvTranspose2d))]
        if flat:
            raise SettingsError(
                f"still has 2D or Cross-D layers ({', '.join(flat[:3])}, ...); "
                "convert it with crossd.to_3d(encoder, init=...) first",
                field="encoder",
            )
        stages = [tuple(stage) for stage in (stages or encoder_stages(encoder))]
        if len(decoder_channels) < len(stages):
            raise SettingsError(
                f"needs {len(stages)} values for {len(stages)} encoder stages", field="decoder_channels"
            )
        self.encoder = encoder
        self.stage_names = stages
        widths = [_stage_channels(self._stage(i), "+".join(s)) for i, s in enumerate(stages)]
        decoder = list(decoder_channels)[-len(stages) :]
        blocks, previous = [], widths[-1]
        for skip, width in zip(reversed(widths[:-1]), decoder[:-1], strict=True):
            blocks.append(_conv_block(previous + skip, width))
            previous = width
        blocks.append(_conv_block(previous, decoder[-1]))
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv3d(decoder[-1], out_channels, 1)

    def _stage(self, index: int) -> nn.Sequential:
        return nn.Sequential(*(self.encoder.get_submodule(name) for name in self.stage_names[index]))

    def encode(self, x: Tensor) -> list[Tensor]:
        """Outputs of every encoder stage, shallow to deep."""
        features = []
        for index in range(len(self.stage_names)):
            x = self._stage(index)(x)
            features.append(x)
        return features

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ValueError(f"UNet3D expects volumes (N, C, D, H, W), got shape {tuple(x.shape)}")
        features = self.encode(x)
        y = features[-1]
        for block, skip in zip(self.decoder[:-1], reversed(features[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = F.interpolate(y, size=x.shape[2:], mode="trilinear", align_corners=False)
        return self.head(self.decoder[-1](y))

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the encoder stages that the network uses (the frozen part of a frozen-encoder run)."""
        for index in range(len(self.stage_names)):
            yield from self._stage(index).parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the decoder and the head (what a frozen-encoder run trains)."""
        yield from self.decoder.parameters()
        yield from self.head.parameters()
