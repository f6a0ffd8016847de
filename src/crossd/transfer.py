"""``crossd transfer``: save the 3D model of a 2D checkpoint (:func:`crossd.models.from_2d.build_3d_model`) with a
description of how it was built."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from crossd.convert.published import read_checkpoint
from crossd.data.preprocessing import Preprocessing
from crossd.errors import OutputError
from crossd.io import save_json, save_safetensors
from crossd.models.from_2d import TRANSFER_KEY, build_3d_model


def transfer_checkpoint(
    checkpoint: str | Path | None,
    init: str,
    output: str | Path,
    arch: str | None = None,
    align: bool = False,
    drop_bn_stats: bool = False,
    axis: str = "d",
) -> tuple[Path, Path]:
    """Build the 3D model of ``checkpoint`` and save it as ``output`` (``.safetensors``) plus ``output.json``.

    Returns ``(weights_path, sidecar_path)``; the sidecar and the safetensors metadata key ``crossd.transfer``
    hold the :class:`TransferInfo`. The source's :class:`~crossd.data.preprocessing.Preprocessing`, when it records
    one, is carried over: metadata key ``crossd.preprocessing``, and ``"preprocessing"`` in the description (``None``
    when the source records none). ``axis``: the flat axis of ``init="2.5d"``.
    """
    output = Path(output)
    if output.suffix != ".safetensors":
        raise OutputError(f"must end in .safetensors, got {output}", field="output")
    model, info = build_3d_model(init, checkpoint, arch, align, drop_bn_stats, axis)
    description = asdict(info)
    source = None if checkpoint is None else Preprocessing.from_metadata(read_checkpoint(checkpoint).metadata)
    description["preprocessing"] = source.to_dict() if source else None
    metadata = {TRANSFER_KEY: json.dumps(description), **(source.metadata() if source else {})}
    weights = save_safetensors(model.state_dict(), output, metadata=metadata)
    sidecar = save_json(description, output.with_suffix(".json"))
    return weights, sidecar
