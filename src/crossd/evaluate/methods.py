"""The networks compared by ``crossd evaluate``: one per ``--init``, built from its checkpoint for 2D or 3D data."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from crossd.convert.inits import get_init
from crossd.convert.kernels import planar_kernel
from crossd.convert.published import read_checkpoint
from crossd.data.preprocessing import Preprocessing, PreprocessingWarning
from crossd.errors import CheckpointError, SettingsError
from crossd.evaluate.task_config import DEFAULT_NORMALIZATION, INITS, INITS_2D, MethodEntry
from crossd.models.factory import ModelSpec, create_model, load_2d_model
from crossd.models.from_2d import build_3d_model, source_spec
from crossd.models.slice_model import SliceModel, classifier_name
from crossd.nn.crossd_conv import CrossDConv


@dataclass
class Method:
    """A compared network: its label in the results, its init and the checkpoint it starts from."""

    name: str
    init: str
    checkpoint: str | None


def method_names(methods: list[MethodEntry]) -> list[Method]:
    """The methods with their labels: the entry's own label when given, else the init name, suffixed
    ``@<checkpoint stem>`` when an init appears more than once."""
    inits = [init for init, *_ in methods]
    out = []
    for init, ckpt, *label in methods:
        if label:
            name = label[0]
        else:
            name = init if inits.count(init) == 1 else f"{init}@{Path(ckpt).stem if ckpt else 'none'}"
        if any(m.name == name for m in out):
            raise SettingsError(f"{name!r} given twice", field="methods")
        out.append(Method(name, init, None if ckpt is None else str(ckpt)))
    return out


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the model's last ``nn.Linear`` (the classifier, :func:`crossd.models.slice_model.classifier_name`) for a
    fresh one with ``num_classes`` outputs."""
    name = classifier_name(model)
    old = model.get_submodule(name)
    head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    model.set_submodule(name, head)
    return head


def build_network(
    method: Method,
    spatial_dims: int,
    arch: str | None = None,
    align: bool = False,
    drop_bn_stats: bool = False,
    slice_pool: str = "mean",
) -> tuple[nn.Module, dict]:
    """The network of ``method`` for ``spatial_dims``-D data (classifier not yet replaced) and a description of how
    it was loaded (recorded in ``results.json``).

    2D data: ``crossd`` is the Cross-D 2D network itself, ``regular2d`` the plain 2D network (of a Cross-D
    checkpoint: its angle-0 kernels), ``random`` a fresh
    regular one (of the checkpoint's architecture when given). 3D data: :func:`crossd.models.from_2d.build_3d_model`;
    ``drop_bn_stats`` applies to ``crossd`` only; the slice aggregation inits ``slices``/``slices3`` (a
    :attr:`~crossd.convert.inits.KernelInit.slice_axes`) are a :class:`~crossd.models.SliceModel` of the plain 2D
    network (as ``regular2d``) pooling by ``slice_pool``.
    """
    kernel_init = get_init(method.init, "evaluate", field="methods")
    if spatial_dims == 3:
        if 3 not in kernel_init.spatial_dims:
            raise SettingsError(
                f"{method.init!r} runs the plain 2D network on 2D data, but the data holds 3D volumes; "
                f"use one of {', '.join(n for n in INITS if 3 in get_init(n).spatial_dims)}",
                field="methods",
            )
        if kernel_init.slice_axes is not None:
            return slice_network(method, arch, slice_pool)
        model, info = build_3d_model(
            method.init, method.checkpoint, arch, align, drop_bn_stats and kernel_init.needs_crossd
        )
        return model, {
            "init": method.init,
            "checkpoint": method.checkpoint,
            "arch": info.arch,
            "source_conv": info.source_conv,
            "align": info.align,
            "drop_bn_stats": info.drop_bn_stats,
        }
    if 2 not in kernel_init.spatial_dims:
        built = "runs the 2D network on the slices of 3D volumes" if kernel_init.slice_axes else "builds a 3D model"
        raise SettingsError(
            f"{method.init!r} {built}, but the data holds 2D images; use one of {INITS_2D}", field="methods"
        )
    model, spec = network_2d(method, arch)
    return model, {"init": method.init, "checkpoint": method.checkpoint, "arch": spec.arch, "source_conv": spec.conv}


def network_2d(method: Method, arch: str | None) -> tuple[nn.Module, ModelSpec]:
    """The 2D network of ``method`` and its spec: a fresh one for an init that needs no checkpoint, else the
    checkpoint's network as trained, for an init that uses angle-0 kernels the plain network of a Cross-D one
    (:func:`planar_network`)."""
    kernel_init = get_init(method.init, "evaluate", field="methods")
    if not kernel_init.needs_checkpoint:
        spec = source_spec(method.checkpoint, arch)
        return create_model(spec.arch, spec.num_classes), spec
    if method.checkpoint is None:
        raise SettingsError(
            f"{method.init!r} needs a checkpoint ({method.init}=CKPT, or one checkpoint for all)", field="methods"
        )
    model, spec = load_2d_model(method.checkpoint, arch=arch)
    if kernel_init.needs_crossd and spec.conv != "crossd":
        raise CheckpointError(
            f"{method.checkpoint}: init {method.init!r} needs a Cross-D checkpoint, got a regular {spec.arch}"
        )
    if kernel_init.angle0 and spec.conv == "crossd":
        model = planar_network(model, spec)
    return model, spec


def slice_network(method: Method, arch: str | None, pool: str) -> tuple[SliceModel, dict]:
    """Slice aggregation: the plain 2D network of ``method``'s checkpoint (a Cross-D one's angle-0 kernels, as
    ``regular2d``) on every slice along the init's :attr:`~crossd.convert.inits.KernelInit.slice_axes`, pooled by
    ``pool``."""
    model, spec = network_2d(method, arch)
    sliced = SliceModel(model, get_init(method.init).slice_axes, pool, inplace=True)
    return sliced, {
        "init": method.init,
        "checkpoint": method.checkpoint,
        "arch": spec.arch,
        "source_conv": spec.conv,
        "axes": sliced.axes,
        "pool": pool,
        "chunk": sliced.chunk,
    }


def new_layers(model: nn.Module, head: nn.Linear) -> nn.Module:
    """The layers a protocol trains from the start (:class:`crossd.evaluate.protocols.Schedule`'s ``head``): the new
    classifier, and for slice aggregation also the slice pool (learned for ``attention``, empty otherwise)."""
    return nn.ModuleList([head, model.pool]) if isinstance(model, SliceModel) else head


def planar_network(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """The regular 2D network of a Cross-D one: every Cross-D layer's angle-0 kernel
    (:func:`crossd.convert.planar_kernel`), every other weight as it is, rotation heads dropped."""
    planar = create_model(spec.arch, spec.num_classes)
    state = {k: v for k, v in model.state_dict().items() if ".rotation_head." not in k}
    for name, module in model.named_modules():
        if isinstance(module, CrossDConv):
            state[f"{name}.weight"] = planar_kernel(module)
    planar.load_state_dict(state)
    return planar


def resolve_preprocessing(
    methods: list[MethodEntry], normalize: str | None, window: tuple[float, float] | None
) -> tuple[str, tuple[float, float] | None]:
    """The ``(normalize, window)`` of an evaluation: each as given, else as the methods' checkpoints record it
    (:class:`crossd.data.preprocessing.Preprocessing`, written by ``crossd pretrain``).

    Warns (:class:`~crossd.data.preprocessing.PreprocessingWarning`, one line) when a given value differs from the
    one the checkpoints agree on; when none is given and the checkpoints disagree, or none of them records a
    normalisation, it falls back to :data:`~crossd.evaluate.task_config.DEFAULT_NORMALIZATION` (no window) and warns.
    """
    paths = sorted({str(m[1]) for m in methods if m[1] is not None})
    records = {p: Preprocessing.from_metadata(read_checkpoint(p).metadata) for p in paths}
    recorded = {p: r for p, r in records.items() if r is not None}
    normalize = _resolve(
        "normalize", normalize, {p: r.normalize for p, r in recorded.items()}, DEFAULT_NORMALIZATION, bool(paths)
    )
    return normalize, _resolve("window", window, {p: r.window for p, r in recorded.items()}, None, False)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return "none (min-max scaling)" if value is None else str(value)


def _resolve(field: str, given: Any, recorded: dict[str, Any], default: Any, warn_unrecorded: bool) -> Any:
    values = set(recorded.values())
    if given is not None:
        if len(values) == 1 and given != next(iter(values)):
            warnings.warn(
                f"{field} {_show(given)} overrides {_show(next(iter(values)))}, the one the checkpoints were "
                f"pretrained with ({', '.join(Path(p).name for p in recorded)})",
                PreprocessingWarning,
                stacklevel=3,
            )
        return given
    if len(values) == 1:
        return values.pop()
    if len(values) > 1:
        seen = ", ".join(f"{Path(p).name}: {_show(v)}" for p, v in recorded.items())
        warnings.warn(
            f"{field}: the checkpoints were pretrained with different ones ({seen}); using {_show(default)}, the "
            "default; give it to choose",
            PreprocessingWarning,
            stacklevel=3,
        )
    elif warn_unrecorded:
        warnings.warn(
            f"{field}: no checkpoint records the one it was pretrained with; using {_show(default)}, the default; "
            "give it to choose (crossd pretrain and crossd demo use imagenet)",
            PreprocessingWarning,
            stacklevel=3,
        )
    return default
