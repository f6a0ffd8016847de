"""3D networks built from 2D checkpoints: :func:`build_3d_model` is :func:`crossd.to_3d` of the 2D network a
checkpoint holds. ``init="crossd"`` needs a Cross-D checkpoint; ``acs``/``i3d``/``center``/``2.5d`` take a regular
one or a Cross-D one (its angle-0 kernels); ``random`` uses only the checkpoint's architecture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from crossd.convert.inits import get_init, init_names
from crossd.convert.published import read_checkpoint
from crossd.convert.to_3d import to_3d
from crossd.errors import CheckpointError, SettingsError
from crossd.models.factory import ModelSpec, create_model, load_2d_model, read_spec

TRANSFER_KEY = "crossd.transfer"
"""The safetensors metadata key of ``crossd transfer`` outputs: the JSON of :class:`TransferInfo`."""

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
    preprocessing: dict | None = None  # the source checkpoint's record (crossd.data.preprocessing), when it has one
    axis: str | None = None  # the flat axis of init "2.5d"


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


def _names(needs_checkpoint: bool, needs_crossd: bool) -> str:
    """The ``to_3d`` inits with these properties, e.g. ``"i3d, center, acs"``."""
    inits = [get_init(name) for name in init_names("to_3d")]
    fit = [i.name for i in inits if (i.needs_checkpoint, i.needs_crossd) == (needs_checkpoint, needs_crossd)]
    return ", ".join(fit)


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
    axis: str = "d",
) -> tuple[nn.Module, TransferInfo]:
    """A 3D classifier (input ``(B, C, D, H, W)``) built from a 2D checkpoint by ``init``.

    Args:
        init: one of ``crossd``, ``acs``, ``i3d``, ``center``, ``random``, ``2.5d`` (see :func:`crossd.to_3d`).
        checkpoint: the 2D checkpoint (any format :func:`crossd.models.load_2d_model` reads); for ``random``
            only its architecture is used and it may be ``None``.
        arch: torchvision name for foreign checkpoints (or for ``random`` without a checkpoint).
        align: ``shift``-mode kernels rolled so their centre slice is the angle-0 kernel (``init="crossd"``).
        drop_bn_stats: reset BatchNorms named ``*bn*`` after conversion (the authors' Cross-D loading).
        axis: the volume axis ``init="2.5d"`` keeps its kernels flat along (``"d"``, ``"h"`` or ``"w"``).
    """
    kernel_init = get_init(init, "to_3d")
    if checkpoint is None and kernel_init.needs_checkpoint:
        raise SettingsError(
            f"{init!r} needs a 2D checkpoint to transfer (without one: {_names(False, False)})", field="init"
        )
    if kernel_init.needs_checkpoint:
        model2d, spec = load_2d_model(checkpoint, arch=arch)
    else:
        spec = source_spec(checkpoint, arch)
        model2d = create_model(spec.arch, spec.num_classes)
    if kernel_init.needs_crossd and spec.conv != "crossd":
        raise CheckpointError(
            f"{checkpoint}: init {init!r} needs a Cross-D checkpoint, this one holds a regular {spec.arch}; "
            f"use {_names(True, False)} for regular checkpoints"
        )
    model = to_3d(model2d, init=init, align=align, inplace=True, axis=axis)
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
        axis=axis if kernel_init.uses_axis else None,
    )
    return model, info


def load_3d_model(path: str | Path) -> tuple[nn.Module, TransferInfo]:
    """The 3D model a ``crossd transfer`` output (``.safetensors``) holds, weights loaded strictly, and how it
    was built. The architecture comes from the file's ``crossd.transfer`` metadata (:class:`TransferInfo`); the
    model takes ``(B, 3, D, H, W)`` and returns ``(B, source_num_classes)`` logits (replace its head for a new
    task). Raises :class:`~crossd.errors.CheckpointError` for a file without that metadata."""
    checkpoint = read_checkpoint(path)
    if TRANSFER_KEY not in checkpoint.metadata:
        raise CheckpointError(f"{path}: not a crossd transfer output (no {TRANSFER_KEY!r} metadata)")
    info = TransferInfo(**json.loads(checkpoint.metadata[TRANSFER_KEY]))
    model = to_3d(
        create_model(info.arch, info.source_num_classes, info.source_conv),
        init=info.init,
        axis=info.axis or "d",
        inplace=True,
    )
    model.load_state_dict(checkpoint.state)
    return model, info
