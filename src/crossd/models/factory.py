"""Build 2D classification models by torchvision name, regular or Cross-D, and rebuild them from checkpoints.

Checkpoints written by crossd carry their architecture: ``.safetensors`` metadata keys ``crossd.arch``,
``crossd.conv`` (``regular``/``crossd``), ``crossd.mode`` and ``crossd.num_classes``; ``checkpoint.pt`` files
(from ``crossd pretrain``) an ``"arch"`` dict with the same fields. Foreign state dicts are inferred: 5D
``conv1`` weights mean Cross-D (``shift`` mode when they use the published key names).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from crossd.convert.checkpoints import load_checkpoint
from crossd.convert.published import published_to_crossd_keys, read_checkpoint
from crossd.convert.to_crossd import to_crossd
from crossd.errors import CheckpointError, SettingsError
from crossd.models.small_cnn import SmallCNN

CONV_TYPES = ("regular", "crossd")


@dataclass
class ModelSpec:
    """What it takes to rebuild a 2D model: torchvision name, conv type, Cross-D mode, classes."""

    arch: str = "resnet18"
    conv: str = "regular"
    mode: str = "rotate"
    num_classes: int = 1000

    def metadata(self) -> dict[str, str]:
        """String metadata for safetensors files."""
        return {f"crossd.{k}": str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelSpec | None:
        fields = {k.removeprefix("crossd."): v for k, v in meta.items() if k.startswith("crossd.")}
        if "arch" not in fields:
            return None
        return cls(
            fields["arch"],
            fields.get("conv", "regular"),
            fields.get("mode", "rotate"),
            int(fields.get("num_classes", 1000)),
        )


LOCAL_MODELS = {"small_cnn": SmallCNN}
"""crossd's own 2D architectures, by name, beside torchvision's."""


def available_architectures() -> list[str]:
    """torchvision classification model names and crossd's own (:data:`LOCAL_MODELS`)."""
    return sorted([*torchvision.models.list_models(module=torchvision.models), *LOCAL_MODELS])


def create_model(
    arch: str = "resnet18", num_classes: int = 1000, conv: str = "regular", mode: str = "rotate", **crossd_kwargs
) -> nn.Module:
    """A randomly initialised torchvision classifier, converted to Cross-D when ``conv="crossd"``.

    Never downloads weights (``weights=None``); warm-start from a local file with :func:`load_2d_model` or
    ``crossd.convert.read_state_dict``.
    """
    if arch not in available_architectures():
        raise SettingsError(
            f"{arch!r} is not a known model; torchvision classification models are e.g. resnet18, resnet50, "
            "densenet121, vgg11_bn, convnext_tiny, efficientnet_b0, mobilenet_v3_small",
            field="arch",
        )
    if conv not in CONV_TYPES:
        raise SettingsError(f"must be one of {CONV_TYPES}, got {conv!r}", field="conv")
    if arch in LOCAL_MODELS:
        model = LOCAL_MODELS[arch](num_classes=num_classes)
    else:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    return to_crossd(model, mode=mode, inplace=True, **crossd_kwargs) if conv == "crossd" else model


def _classifier_classes(state: dict[str, torch.Tensor]) -> int:
    for key in (
        "fc.weight",
        "classifier.weight",
        "classifier.1.weight",
        "classifier.6.weight",
        "classifier.3.weight",
        "classifier.2.weight",
        "head.weight",
    ):
        if key in state:
            return int(state[key].shape[0])
    raise CheckpointError("cannot infer the number of classes from the checkpoint; no known classifier key found")


def spec_from_metadata(metadata: dict) -> ModelSpec | None:
    """The :class:`ModelSpec` in a checkpoint's metadata (:class:`crossd.convert.published.CheckpointFile`):
    a ``.pt`` ``"arch"`` dict (or its JSON), or ``.safetensors`` ``crossd.*`` strings; ``None`` for a foreign file."""
    arch = metadata.get("arch")
    if isinstance(arch, str):
        arch = json.loads(arch)
    if isinstance(arch, dict):
        return ModelSpec(**arch)
    return ModelSpec.from_metadata(metadata)


def read_spec(path: str | Path) -> ModelSpec | None:
    """The :class:`ModelSpec` stored with a crossd checkpoint, or ``None`` for a foreign file; a missing or
    unreadable file is a one-line ``FileNotFoundError``/``ValueError``."""
    return spec_from_metadata(read_checkpoint(path).metadata)


def load_2d_model(path: str | Path, arch: str | None = None) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a 2D (regular or Cross-D) classifier from a checkpoint and load its weights strictly.

    The file is read once (:func:`crossd.convert.published.read_checkpoint`) and loaded through
    :func:`crossd.load_checkpoint`, so a first convolution with 1 input channel (MRI/CT networks) is averaged into
    the 3 channels crossd models take, with a warning.

    Args:
        path: ``checkpoint.pt``/``model.safetensors`` from ``crossd pretrain``, a plain state dict, a
            published Cross-D checkpoint, or a torchvision state dict.
        arch: torchvision name for foreign files (default ``resnet18``); must agree with crossd metadata.
    """
    checkpoint = read_checkpoint(path)  # read once: state and spec
    spec, state = spec_from_metadata(checkpoint.metadata), checkpoint.state
    if spec is None:
        published = any(k.endswith(".weights_3d") for k in state)
        state = published_to_crossd_keys(state)
        first = next((v for k, v in state.items() if k.endswith("weight") and v.dim() >= 4), None)
        conv = "crossd" if first is not None and first.dim() == 5 else "regular"
        spec = ModelSpec(arch or "resnet18", conv, "shift" if published else "rotate", _classifier_classes(state))
    elif arch is not None and arch != spec.arch:
        raise CheckpointError(f"{arch}, but {path} holds a {spec.arch}", field="arch")
    model = create_model(spec.arch, spec.num_classes, spec.conv, spec.mode)
    report = load_checkpoint(model, state, strict=False, verbose=False)  # 1 <-> 3 input channels, with a warning
    if not report.ok:
        problems = {"missing": report.missing, "unexpected": report.unexpected, "mismatched": list(report.mismatched)}
        found = ", ".join(f"{k} {v[:3]}" for k, v in problems.items() if v)
        raise CheckpointError(
            f"{spec.arch}: the weights of {path} do not fit a {spec.conv} {spec.arch} ({found})", field="arch"
        )
    return model, spec
