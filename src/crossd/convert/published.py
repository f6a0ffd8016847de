"""Reading checkpoint files, once, in one place (every command and loader goes through :func:`read_checkpoint`),
and loading the authors' published Cross-D ResNet-18."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18

from crossd.convert.to_crossd import to_crossd
from crossd.errors import CheckpointError

_PREFIXES = ("_orig_mod.", "module.")


@dataclass
class CheckpointFile:
    """One read of a checkpoint file: its tensors (unwrapped, prefixes stripped) and what describes them
    (``.safetensors`` metadata strings, or a ``.pt`` dict's ``"arch"`` and ``"preprocessing"`` entries)."""

    state: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)


def torch_load(path: Path, problem: str = "not a readable PyTorch checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a one-line :class:`~crossd.errors.CheckpointError`
    ``"{path}: {problem} (why)"`` for a corrupt file or objects outside the safe list."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of some corrupt files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors: corrupt file, or objects outside the safe list
        text = str(exc).strip()
        if "WeightsUnpickler error:" in text:  # torch's advice to retry with weights_only=False is not ours
            detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0].split())
            reason = f"{detail}; crossd reads only tensors and plain containers, never arbitrary pickles"
        else:
            first_line = text.splitlines()[0] if text else ""
            reason = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        raise CheckpointError(f"{path}: {problem} ({reason})") from None


def unwrap_state(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict inside ``obj`` (``{"model"|"state_dict"|"net": ...}`` unwrapped), keys stripped of
    ``module.``/``_orig_mod.``; a one-line :class:`~crossd.errors.CheckpointError` naming ``source`` when it is
    not a dict of tensors."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "net"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: no state dict of tensors found (got {type(obj).__name__})")
    return {strip_prefixes(k): v for k, v in obj.items()}


def read_checkpoint(path: str | Path) -> CheckpointFile:
    """Read a ``.pt``/``.pth`` (``weights_only=True``) or ``.safetensors`` checkpoint once: its state dict and
    metadata. Raises :class:`~crossd.errors.CheckpointError` with a one-line reason for a missing, corrupt or
    foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                metadata, obj = dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        obj = torch_load(path)
        metadata = {k: obj[k] for k in ("arch", "preprocessing") if isinstance(obj, dict) and k in obj}
    return CheckpointFile(unwrap_state(obj, str(path)), metadata)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (see :func:`read_checkpoint`)."""
    return read_checkpoint(path).state


def strip_prefixes(key: str) -> str:
    """``key`` without leading ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``) prefixes."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def published_to_crossd_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the published layer's ``weights_3d`` and ``rotation_params.*`` keys to ours."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"\.weights_3d$", ".weight", key)
        key = key.replace(".rotation_params.", ".rotation_head.")
        out[key] = value
    return out


def load_published(path: str | Path, num_classes: int | None = None) -> nn.Module:
    """A torchvision ResNet-18 converted with ``to_crossd(mode="shift")`` holding a published checkpoint.

    Args:
        path: a state dict or ``{"model": state_dict}`` saved by the authors' code (``.pt``/``.pth``), keys like
            ``layer1.0.conv1.weights_3d`` and ``layer1.0.conv1.rotation_params.{0,1,3}.*``; optional
            ``_orig_mod.``/``module.`` prefixes; ``.safetensors`` too.
        num_classes: classifier size; inferred from ``fc.weight`` when ``None``.

    Returns:
        The model in eval mode; its outputs equal those of the published layer.
    """
    state = published_to_crossd_keys(read_state_dict(path))
    if "conv1.weight" not in state or state["conv1.weight"].dim() != 5:
        raise CheckpointError(f"{path}: not a published Cross-D ResNet-18 checkpoint (no 5D 'conv1.weights_3d')")
    if "fc.weight" not in state:
        raise CheckpointError(f"{path}: not a published Cross-D ResNet-18 checkpoint (no 'fc.weight')")
    found = state["fc.weight"].shape[0]
    if num_classes is not None and num_classes != found:
        raise CheckpointError(f"{num_classes}, but {path} has {found} classes", field="num_classes")
    model = to_crossd(resnet18(num_classes=found), mode="shift", inplace=True)
    result = model.load_state_dict(state, strict=False)
    problems = [f"missing: {', '.join(result.missing_keys[:5])}"] if result.missing_keys else []
    if result.unexpected_keys:
        problems.append(f"unexpected: {', '.join(result.unexpected_keys[:5])}")
    if problems:
        raise CheckpointError(f"{path}: keys do not match a Cross-D ResNet-18 ({'; '.join(problems)})")
    return model.eval()
