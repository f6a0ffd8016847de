"""3D networks built from 2D checkpoints: :func:`build_3d_model` is :func:`crossd.to_3d` of the 2D network a
checkpoint holds. ``init="crossd"`` needs a Cross-D checkpoint; ``acs``/``i3d``/``center`` take a regular one or a
Cross-D one (its angle-0 kernels); ``random`` uses only the checkpoint's architecture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from crossd.convert.to_3d import INITS_3D, to_3d
from crossd.errors import CheckpointError, SettingsError
from crossd.models.factory import ModelSpec, create_model, load_2d_model, read_spec

DEFAULT_ARCH = "resnet18"


@dataclass
class TransferInfo:
    """How a 3D model was built; saved as the JSON sidecar and in the safetensors metadata."""

    arch: str
    init: str
    source_checkpoint: str | None
    source_conv: str
    source_num_classes: int
    align: bool = False
    drop_bn_stats: bool = False
    spatial_dims: int = 3


def drop_bn_statistics(model: nn.Module) -> list[str]:
    """Reset every BatchNorm whose qualified name contains ``"bn"`` (affine to 1/0, running stats to 0/1).

    This mirrors the authors' Cross-D loading (every state-dict key containing ``"bn"`` dropped), which resets
    ``bn1``/``bn2`` of a ResNet but keeps the ``downsample`` BatchNorms. Returns the names reset.
    """
    reset = []
    for name, module in model.named_modules():
        if "bn" in name and isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
            reset.append(name)
    return reset


def source_spec(checkpoint: str | Path | None, arch: str | None = None) -> ModelSpec:
    """The architecture of ``checkpoint`` (crossd metadata), else a regular ``arch`` (default resnet18)."""
    spec = read_spec(checkpoint) if checkpoint is not None else None
    return spec or ModelSpec(arch or DEFAULT_ARCH, "regular")


def build_3d_model(
    init: str,
    checkpoint: str | Path | None,
    arch: str | None = None,
    align: bool = False,
    drop_bn_stats: bool = False,
) -> tuple[nn.Module, TransferInfo]:
    """A 3D classifier (input ``(B, C, D, H, W)``) built from a 2D checkpoint by ``init``.

    Args:
        init: one of ``crossd``, ``acs``, ``i3d``, ``center``, ``random``.
        checkpoint: the 2D checkpoint (any format :func:`crossd.models.load_2d_model` reads); for ``random``
            only its architecture is used and it may be ``None``.
        arch: torchvision name for foreign checkpoints (or for ``random`` without a checkpoint).
        align: ``shift``-mode kernels rolled so their centre slice is the angle-0 kernel (``init="crossd"``).
        drop_bn_stats: reset BatchNorms named ``*bn*`` after conversion (the authors' Cross-D loading).
    """
    if init not in INITS_3D:
        raise SettingsError(f"must be one of {INITS_3D} for a 3D model, got {init!r}", field="init")
    if checkpoint is None and init != "random":
        raise SettingsError(
            f"{init!r} needs a 2D checkpoint to transfer; only 'random' works without one", field="init"
        )
    if init == "random":
        spec = source_spec(checkpoint, arch)
        model2d = create_model(spec.arch, spec.num_classes)
    else:
        model2d, spec = load_2d_model(checkpoint, arch=arch)
    if init == "crossd" and spec.conv != "crossd":
        raise CheckpointError(
            f"{checkpoint}: init 'crossd' needs a Cross-D checkpoint, this one holds a regular {spec.arch}; "
            "use acs, i3d or center for regular checkpoints"
        )
    model = to_3d(model2d, init=init, align=align, inplace=True)
    if drop_bn_stats:
        drop_bn_statistics(model)
    info = TransferInfo(
        spec.arch,
        init,
        None if checkpoint is None else str(checkpoint),
        spec.conv,
        spec.num_classes,
        align,
        drop_bn_stats,
    )
    return model, info
