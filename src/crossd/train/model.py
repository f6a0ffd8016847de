"""The model a pretraining run trains: a torchvision classifier, regular or Cross-D, optionally warm-started."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from crossd.convert.to_crossd import to_crossd
from crossd.models import ModelSpec, create_model, load_2d_model


def build_model(spec: ModelSpec, weights: str | Path | None = None) -> nn.Module:
    """``spec``'s model, randomly initialised or warm-started from a local 2D checkpoint.

    Warm start: every tensor of ``weights`` whose name and shape fit is copied (a classifier of another size is
    left fresh); regular weights entering a Cross-D model go through ``to_crossd(init="center")``, so the
    Cross-D model starts as the regular one at rotation angle 0.
    """
    if weights is None:
        return create_model(spec.arch, spec.num_classes, spec.conv, spec.mode)
    source, source_spec = load_2d_model(weights, arch=spec.arch)
    if source_spec.conv == "crossd" and spec.conv == "regular":
        raise ValueError(f"{weights}: holds Cross-D weights; a regular model cannot start from them (use --rot)")
    if source_spec.conv == "crossd" and source_spec.mode != spec.mode:
        raise ValueError(f"{weights}: Cross-D weights of mode {source_spec.mode!r}, but --mode is {spec.mode!r}")
    model = create_model(spec.arch, spec.num_classes, source_spec.conv, spec.mode)
    target = model.state_dict()
    fitting = {k: v for k, v in source.state_dict().items() if k in target and v.shape == target[k].shape}
    if not fitting:
        raise ValueError(f"{weights}: no weights fit a {spec.arch}")
    model.load_state_dict(fitting, strict=False)
    if spec.conv == "crossd" and source_spec.conv == "regular":
        model = to_crossd(model, mode=spec.mode, init="center", inplace=True)
    return model
