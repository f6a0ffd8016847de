"""Test fixture: the 2D networks the converters are checked on (``tests/convert/test_model_table.py``, and
``benchmarks/model_matrix.py``, which loads this file by path, for ``docs/models.md``).

Each entry builds an untrained model (no weights are downloaded) with a small head, so the table can be rebuilt
anywhere. timm entries need the optional extra (``pip install -e ".[timm]"``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """One row of the table.

    Attributes:
        library: ``"torchvision"``, ``"timm"`` or ``"monai"`` (the package that must be importable).
        in_channels: channels of the input images and volumes.
        segmentation: ``True`` for dense outputs ``(N, classes, *spatial)``, else logits ``(N, classes)``.
    """

    library: str
    in_channels: int = 3
    segmentation: bool = False


NUM_CLASSES = 2
MODELS: dict[str, ModelEntry] = {
    "torchvision/vgg11_bn": ModelEntry("torchvision"),
    "torchvision/densenet121": ModelEntry("torchvision"),
    "torchvision/convnext_tiny": ModelEntry("torchvision"),
    "timm/convnext_nano": ModelEntry("timm"),
    "timm/tf_efficientnet_b0": ModelEntry("timm"),
    "timm/resnet18": ModelEntry("timm"),
    "timm/resnet50d": ModelEntry("timm"),
    "timm/efficientnet_b0": ModelEntry("timm"),
    "timm/regnety_002": ModelEntry("timm"),
    "timm/densenet121": ModelEntry("timm"),
    "timm/mobilenetv3_small_100": ModelEntry("timm"),
    "monai/DenseNet121": ModelEntry("monai", in_channels=1),
    "monai/BasicUNet": ModelEntry("monai", in_channels=1, segmentation=True),
}


def build_model(name: str) -> nn.Module:
    """An untrained 2D model of the table with :data:`NUM_CLASSES` outputs, in eval mode.

    Raises ``ModuleNotFoundError`` when the entry's library is not installed.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    library, arch = name.split("/")
    module = importlib.import_module(library)
    entry = MODELS[name]
    if library == "torchvision":
        model = module.models.get_model(arch, weights=None, num_classes=NUM_CLASSES)
    elif library == "timm":
        model = module.create_model(arch, pretrained=False, num_classes=NUM_CLASSES)
    else:
        net = getattr(importlib.import_module("monai.networks.nets"), arch)
        model = net(spatial_dims=2, in_channels=entry.in_channels, out_channels=NUM_CLASSES)
    return model.eval()
