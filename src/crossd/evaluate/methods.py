"""The networks compared by ``crossd evaluate``: one per ``--init``, built from its checkpoint for 2D or 3D data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from crossd.convert.kernels import planar_kernel
from crossd.errors import CheckpointError, SettingsError
from crossd.evaluate.config import INITS, INITS_2D, SLICE_INITS, MethodEntry
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
    ``drop_bn_stats`` applies to ``crossd`` only; ``slices``/``slices3`` (:data:`SLICE_INITS`) are a
    :class:`~crossd.models.SliceModel` of the plain 2D network (as ``regular2d``) pooling by ``slice_pool``.
    """
    if spatial_dims == 3:
        if method.init == "regular2d":
            raise SettingsError(
                "'regular2d' runs the plain 2D network on 2D data, but the data holds 3D volumes; "
                f"use one of {tuple(i for i in INITS if i != 'regular2d')}",
                field="methods",
            )
        if method.init in SLICE_INITS:
            return slice_network(method, arch, slice_pool)
        model, info = build_3d_model(
            method.init, method.checkpoint, arch, align, drop_bn_stats and method.init == "crossd"
        )
        return model, {
            "init": method.init,
            "checkpoint": method.checkpoint,
            "arch": info.arch,
            "source_conv": info.source_conv,
            "align": info.align,
            "drop_bn_stats": info.drop_bn_stats,
        }
    if method.init in SLICE_INITS:
        raise SettingsError(
            f"{method.init!r} runs the 2D network on the slices of 3D volumes, but the data holds 2D images; "
            "use regular2d",
            field="methods",
        )
    if method.init not in INITS_2D:
        raise SettingsError(
            f"{method.init!r} builds a 3D model, but the data holds 2D images; use one of {INITS_2D}", field="methods"
        )
    if method.init == "random":
        spec = source_spec(method.checkpoint, arch)
        model = create_model(spec.arch, spec.num_classes)
    else:
        model, spec = _checkpoint_network(method, arch)
        if method.init == "crossd" and spec.conv != "crossd":
            raise CheckpointError(
                f"{method.checkpoint}: init 'crossd' needs a Cross-D checkpoint, got a regular {spec.arch}"
            )
        if method.init == "regular2d" and spec.conv == "crossd":
            model = planar_network(model, spec)
    return model, {"init": method.init, "checkpoint": method.checkpoint, "arch": spec.arch, "source_conv": spec.conv}


def _checkpoint_network(method: Method, arch: str | None) -> tuple[nn.Module, ModelSpec]:
    """The 2D network ``method``'s checkpoint holds, as trained."""
    if method.checkpoint is None:
        raise SettingsError(
            f"{method.init!r} needs a checkpoint ({method.init}=CKPT, or one checkpoint for all)", field="methods"
        )
    return load_2d_model(method.checkpoint, arch=arch)


def slice_network(method: Method, arch: str | None, pool: str) -> tuple[SliceModel, dict]:
    """Slice aggregation: the plain 2D network of ``method``'s checkpoint (a Cross-D one's angle-0 kernels, as
    ``regular2d``) on every slice along the axes of ``method.init`` (:data:`SLICE_INITS`), pooled by ``pool``."""
    model, spec = _checkpoint_network(method, arch)
    if spec.conv == "crossd":
        model = planar_network(model, spec)
    sliced = SliceModel(model, SLICE_INITS[method.init], pool, inplace=True)
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
