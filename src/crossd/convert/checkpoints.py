"""``load_checkpoint``: foreign weights into any crossd model, with a report of every key.

Handles what readers of other projects' checkpoints trip over: wrappers (``{"model"|"state_dict"|"net": ...}``),
``module.``/``_orig_mod.`` prefixes, ``.safetensors``, 2D kernels loaded into Cross-D or 3D layers (through a
kernel init), 3D ResNets with 1 input channel (MedicalNet) loaded into 3-channel models and back, and
channel-broadcast ``(C, 1, 1)`` tensors in 3D models. Files are read with ``weights_only=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from crossd.convert.inits import KernelInit, get_init, init_names
from crossd.convert.kernels import crossd_kernel_from_2d
from crossd.convert.published import published_to_crossd_keys, read_state_dict, unwrap_state
from crossd.errors import CheckpointError
from crossd.nn.crossd_conv import CrossDConv

CHECKPOINT_INITS = init_names("checkpoint")
_SHOWN = 8


@dataclass
class LoadReport:
    """Every key of a checkpoint load, by outcome.

    Attributes:
        loaded: keys copied as they are.
        adapted: ``key -> how`` for tensors changed to fit (2D kernel -> 3D, input channels, broadcast axis).
        explained: ``key -> why`` for keys left out for a known reason (rotation heads a 2D source does not
            have or a 3D model does not need, BatchNorm counters an old checkpoint lacks).
        excluded: keys matching ``exclude`` (from the file or the model), left alone.
        missing: model keys the checkpoint does not provide.
        unexpected: checkpoint keys the model does not have.
        mismatched: ``key -> "checkpoint shape vs model shape"`` for tensors that could not be adapted.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)
    explained: dict[str, str] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """``True`` when nothing is missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)}, adapted {len(self.adapted)}, explained {len(self.explained)}, "
            f"excluded {len(self.excluded)}, missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
            f"shape-mismatched {len(self.mismatched)}"
        ]
        groups = {
            "adapted": [f"{k} ({v})" for k, v in self.adapted.items()],
            "explained": _group_reasons(self.explained),
            "missing": self.missing,
            "unexpected": self.unexpected,
            "shape-mismatched": [f"{k} ({v})" for k, v in self.mismatched.items()],
        }
        for title, items in groups.items():
            if items:
                more = f", ... (+{len(items) - _SHOWN})" if len(items) > _SHOWN else ""
                lines.append(f"  {title}: {', '.join(items[:_SHOWN])}{more}")
        return "\n".join(lines)


def _group_reasons(explained: dict[str, str]) -> list[str]:
    counts: dict[str, int] = {}
    for why in explained.values():
        counts[why] = counts.get(why, 0) + 1
    return [f"{n} keys: {why}" for why, n in counts.items()]


def _matches(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _fit_in_channels(key: str, src: Tensor, dst_shape: torch.Size) -> Tensor | None:
    """A first-conv kernel with 3 input channels summed into 1, or 1 channel averaged into 3 (so a grey image
    repeated to 3 channels gives the same response)."""
    if src.dim() < 3 or src.shape[0] != dst_shape[0] or {src.shape[1], dst_shape[1]} != {1, 3}:
        return None
    if src.shape[1] == 3:
        new, how = src.sum(1, keepdim=True), "3 input channels summed into 1"
    else:
        new, how = src.repeat(1, 3, *[1] * (src.dim() - 2)) / 3, "1 input channel averaged into 3"
    warnings.warn(f"load_checkpoint: {key}: {how}", UserWarning, stacklevel=4)
    return new


def _kernel_to_3d(src: Tensor, module: nn.Module, init: KernelInit) -> Tensor | None:
    """A 2D kernel ``(Co, Ci, K, K)`` as the 3D kernel of ``module`` (``Conv3d``/``ConvTranspose3d``/Cross-D), or
    ``None`` if ``init`` cannot place it there."""
    if isinstance(module, CrossDConv):
        return crossd_kernel_from_2d(src, init.kernel, module.mode)
    return init.kernel(src, module.weight.shape)


def _adapt(key: str, src: Tensor, dst: Tensor, module: nn.Module | None, init: KernelInit) -> tuple[Tensor, str] | None:
    """``src`` changed to the shape of ``dst``, with a note on how, or ``None`` if it cannot be."""
    notes = []
    if src.dim() >= 3 and src.shape[1] != dst.shape[1] and not isinstance(module, nn.ConvTranspose3d):
        fitted = _fit_in_channels(key, src, dst.shape)
        if fitted is None:
            return None
        notes.append(f"input channels {src.shape[1]} -> {dst.shape[1]}")
        src = fitted
    if src.shape == dst.shape:
        return src, ", ".join(notes)
    if src.dim() == 4 and dst.dim() == 5 and module is not None and key.endswith(".weight"):
        kernel = _kernel_to_3d(src, module, init)
        if kernel is not None and kernel.shape == dst.shape:
            return kernel, ", ".join([*notes, f"2D kernel -> 3D ({init.name})"])
    if src.dim() == 3 and tuple(src.shape[1:]) == (1, 1) and dst.shape == (*src.shape, 1):
        return src.unsqueeze(-1), ", ".join([*notes, "(C, 1, 1) -> (C, 1, 1, 1)"])
    return None


def load_checkpoint(
    model: nn.Module,
    path: str | Path | Mapping[str, Tensor],
    strict: bool = True,
    init: str = "center",
    exclude: Iterable[str] = (),
    verbose: bool = True,
) -> LoadReport:
    """Load a checkpoint into ``model``, adapting what can be adapted, and report every key.

    Accepted: plain state dicts and ``{"model"|"state_dict"|"net": state_dict}`` in ``.pt``/``.pth``
    (``weights_only=True``) or ``.safetensors``; ``module.``/``_orig_mod.`` prefixes; the authors' published
    Cross-D key names; torchvision 2D weights into a Cross-D model (from :func:`crossd.to_crossd`) or a 3D model
    (from :func:`crossd.to_3d`), each 2D kernel placed by ``init``; MedicalNet-style 3D ResNets (keys ``conv1``,
    ``bn1``, ``layer1.0.conv1``, ..., prefix ``module.``, 7x7x7 ``conv1`` with one input channel) into
    ``to_3d(resnet)`` models -- their ``conv_seg`` head and, for shortcut type A, the missing ``downsample``
    layers show up as unexpected/missing: ``exclude`` them or use ``strict=False``. A first convolution with 3
    input channels loaded into 1 is summed, 1 into 3 averaged, with a warning.

    Args:
        model: the model to fill (changed in place).
        path: a checkpoint file, or an in-memory state dict (wrappers and prefixes handled the same way).
        strict: raise :class:`~crossd.errors.CheckpointError` (with the report in the message, before changing
            ``model``) if any key is missing, unexpected or shape-mismatched.
        init: how a 2D kernel becomes 3D: ``"center"`` (central depth slice; in a Cross-D layer, the slice used
            at angle 0) or ``"i3d"``/``"inflate"`` (repeated over depth, divided by its size).
        exclude: module-name prefixes (e.g. ``"fc"``) whose keys are skipped, in the checkpoint and the model.
        verbose: print the report.

    Returns:
        The :class:`LoadReport`.
    """
    kernel_init = get_init(init, "checkpoint")
    source = published_to_crossd_keys(
        unwrap_state(path, "state dict") if isinstance(path, Mapping) else read_state_dict(path)
    )
    target = model.state_dict()
    modules = dict(model.named_modules())
    prefixes = tuple(exclude)
    model_has_heads = any(".rotation_head." in k for k in target)
    source_has_heads = any(".rotation_head." in k for k in source)
    report, state = LoadReport(), {}

    for key, src in source.items():
        if _matches(key, prefixes):
            report.excluded.append(key)
        elif key not in target:
            if ".rotation_head." in key and not model_has_heads:
                report.explained[key] = "rotation head not used by this model"
            else:
                report.unexpected.append(key)
        elif src.shape == target[key].shape:
            state[key] = src
            report.loaded.append(key)
        elif (fitted := _adapt(key, src, target[key], modules.get(key.rpartition(".")[0]), kernel_init)) is not None:
            state[key], report.adapted[key] = fitted
        else:
            report.mismatched[key] = f"{tuple(src.shape)} vs {tuple(target[key].shape)}"

    for key in target:
        if key in source:
            continue
        if _matches(key, prefixes):
            report.excluded.append(key)
        elif ".rotation_head." in key and not source_has_heads:
            report.explained[key] = "new rotation head (the checkpoint has none)"
        elif key.endswith("num_batches_tracked"):
            report.explained[key] = "BatchNorm counter absent from the checkpoint"
        else:
            report.missing.append(key)

    name = "state dict" if isinstance(path, Mapping) else str(path)
    if strict and not report.ok:
        raise CheckpointError(f"{name}: checkpoint does not fit {type(model).__name__}: {report}")
    model.load_state_dict(state, strict=False)
    if verbose:
        print(f"load_checkpoint {name}: {report}")
    return report
