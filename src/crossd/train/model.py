"""The model a pretraining run trains: a torchvision classifier, regular or Cross-D, optionally warm-started."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from crossd.convert.inits import get_init
from crossd.convert.to_crossd import to_crossd
from crossd.errors import CheckpointError
from crossd.models import ModelSpec, create_model, load_2d_model
from crossd.nn.crossd_conv import set_plane_sampling


def build_model(
    spec: ModelSpec,
    weights: str | Path | None = None,
    crossd_init: str = "random",
    plane_sampling: str = "head",
    granularity: str | int = "sample",
) -> nn.Module:
    """``spec``'s model, randomly initialised or warm-started from a local 2D checkpoint.

    A fresh Cross-D model's kernels start as ``crossd_init`` says (``"random"``: 3D Kaiming; ``"center"`` or
    ``"inflate"``: the fresh 2D model's kernels placed by :func:`crossd.to_crossd`); ``plane_sampling`` and
    ``granularity`` are set on every Cross-D layer.

    Warm start: every tensor of ``weights`` whose name and shape fit is copied (a classifier of another size is
    left fresh); regular weights entering a Cross-D model go through ``to_crossd(init="center")``, so the
    Cross-D model starts as the regular one at rotation angle 0.
    """
    if weights is None:
        if spec.conv == "crossd" and get_init(crossd_init, "to_crossd", field="crossd_init").kernel is not None:
            regular = create_model(spec.arch, spec.num_classes, "regular")
            model = to_crossd(regular, mode=spec.mode, init=crossd_init, inplace=True)
        else:
            model = create_model(spec.arch, spec.num_classes, spec.conv, spec.mode)
        return set_plane_sampling(model, plane_sampling, granularity)
    source, source_spec = load_2d_model(weights, arch=spec.arch)
    if source_spec.conv == "crossd" and spec.conv == "regular":
        raise CheckpointError(
            f"{weights}: holds Cross-D weights; a regular model cannot start from them (use conv 'crossd')",
            field="weights",
        )
    if source_spec.conv == "crossd" and source_spec.mode != spec.mode:
        raise CheckpointError(
            f"{weights}: Cross-D weights of mode {source_spec.mode!r}, not {spec.mode!r}", field="weights"
        )
    model = create_model(spec.arch, spec.num_classes, source_spec.conv, spec.mode)
    target = model.state_dict()
    fitting = {k: v for k, v in source.state_dict().items() if k in target and v.shape == target[k].shape}
    if not fitting:
        raise CheckpointError(f"{weights}: no weights fit a {spec.arch}", field="weights")
    model.load_state_dict(fitting, strict=False)
    if spec.conv == "crossd" and source_spec.conv == "regular":
        model = to_crossd(model, mode=spec.mode, init="center", inplace=True)
    return set_plane_sampling(model, plane_sampling, granularity)
