"""A small 4-stage CNN for quick studies on small images (the setting of shared/design/transfer-findings.md)."""

from __future__ import annotations

from torch import Tensor, nn


def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """``conv3x3 -> BN -> ReLU`` stages (widths ``16, 32, 64, 128``; stride 2 from the second), global average
    pooling and a linear classifier ``fc``. Input ``(B, 3, H, W)`` -> logits ``(B, num_classes)``; every layer has
    a 3D twin, so :func:`crossd.to_crossd` and :func:`crossd.to_3d` convert it like a ResNet."""

    def __init__(self, num_classes: int = 1000, widths: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 3):
        super().__init__()
        stages, previous = [], in_channels
        for i, width in enumerate(widths):
            stages.append(_stage(previous, width, 1 if i == 0 else 2))
            previous = width
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.avgpool(self.features(x)).flatten(1))
