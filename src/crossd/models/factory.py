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

from crossd.convert.published import published_to_crossd_keys, read_state_dict
from crossd.convert.to_crossd import to_crossd
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
        raise ValueError(
            f"unknown model {arch!r}; torchvision classification models are e.g. resnet18, resnet50, "
            "densenet121, vgg11_bn, convnext_tiny, efficientnet_b0, mobilenet_v3_small"
        )
    if conv not in CONV_TYPES:
        raise ValueError(f"conv must be one of {CONV_TYPES}, got {conv!r}")
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
    raise ValueError("cannot infer the number of classes from the checkpoint; no known classifier key found")


def read_spec(path: str | Path) -> ModelSpec | None:
    """The :class:`ModelSpec` stored with a crossd checkpoint, or ``None`` for a foreign file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                return ModelSpec.from_metadata(f.metadata() or {})
        except Exception as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # read_state_dict reports unreadable files with a precise message
    if isinstance(obj, dict) and isinstance(obj.get("arch"), dict):
        return ModelSpec(**obj["arch"])
    if isinstance(obj, dict) and isinstance(obj.get("arch"), str):
        return ModelSpec(**json.loads(obj["arch"]))
    return None


def load_2d_model(path: str | Path, arch: str | None = None) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a 2D (regular or Cross-D) classifier from a checkpoint and load its weights strictly.

    Args:
        path: ``checkpoint.pt``/``model.safetensors`` from ``crossd pretrain``, a plain state dict, a
            published Cross-D checkpoint, or a torchvision state dict.
        arch: torchvision name for foreign files (default ``resnet18``); must agree with crossd metadata.
    """
    raw = read_state_dict(path)
    spec = read_spec(path)
    if spec is None:
        published = any(k.endswith(".weights_3d") for k in raw)
        state = published_to_crossd_keys(raw)
        first = next((v for k, v in state.items() if k.endswith("weight") and v.dim() >= 4), None)
        conv = "crossd" if first is not None and first.dim() == 5 else "regular"
        spec = ModelSpec(arch or "resnet18", conv, "shift" if published else "rotate", _classifier_classes(state))
    else:
        state = raw
        if arch is not None and arch != spec.arch:
            raise ValueError(f"{path}: checkpoint holds a {spec.arch}, not a {arch}")
    model = create_model(spec.arch, spec.num_classes, spec.conv, spec.mode)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit a {spec.conv} {spec.arch} "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    return model, spec
