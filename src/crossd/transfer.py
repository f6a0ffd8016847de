"""``crossd transfer``: save the 3D model of a 2D checkpoint (:func:`crossd.models.from_2d.build_3d_model`) with a
description of how it was built."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from crossd.errors import OutputError
from crossd.io import save_json, save_safetensors
from crossd.models.from_2d import build_3d_model


def transfer_checkpoint(
    checkpoint: str | Path | None,
    init: str,
    output: str | Path,
    arch: str | None = None,
    align: bool = False,
    drop_bn_stats: bool = False,
) -> tuple[Path, Path]:
    """Build the 3D model of ``checkpoint`` and save it as ``output`` (``.safetensors``) plus ``output.json``.

    Returns ``(weights_path, sidecar_path)``; the sidecar and the safetensors metadata key ``crossd.transfer``
    hold the :class:`TransferInfo`.
    """
    output = Path(output)
    if output.suffix != ".safetensors":
        raise OutputError(f"must end in .safetensors, got {output}", field="output")
    model, info = build_3d_model(init, checkpoint, arch, align, drop_bn_stats)
    description = asdict(info)
    weights = save_safetensors(model.state_dict(), output, metadata={"crossd.transfer": json.dumps(description)})
    sidecar = save_json(description, output.with_suffix(".json"))
    return weights, sidecar
