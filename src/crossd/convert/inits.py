"""The kernel inits, in one registry: each :class:`KernelInit` carries how it builds 3D (or Cross-D) kernels from
2D ones and where it is accepted. ``to_3d``, ``to_crossd``, ``load_checkpoint``, ``volume_twin``, the evaluation
and the CLI choices all look their init up here (:func:`get_init`) instead of comparing names.

A new init is one :func:`register_init` call (the style of timm's model registry and MONAI's layer factories)::

    register_init(KernelInit("mine", "what it does", uses=("to_3d",), conv=planar_conv(my_kernel)))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from crossd.convert.conv_3d import (
    ConvBuilder,
    acs_conv,
    crossd_conv,
    flat_conv,
    flat_transposed_conv,
    planar_conv,
    transposed_conv,
)
from crossd.convert.kernels import KernelFn, acs_kernel, center_kernel, flat_kernel, inflate_kernel
from crossd.errors import SettingsError

USES = {
    "to_3d": "crossd.to_3d",
    "to_crossd": "crossd.to_crossd",
    "checkpoint": "load_checkpoint",
    "twin": "volume_twin",
    "evaluate": "the evaluation",
}
"""Where a kernel init can be used, and how a message names that place."""


@dataclass(frozen=True)
class KernelInit:
    """One init: what it does, how it builds kernels, and where it is accepted.

    Attributes:
        name: the name callers pass (``init="i3d"``, ``--init i3d``).
        description: one line for docs and reports.
        uses: where the name is accepted: ``"to_3d"`` (:func:`crossd.to_3d`, ``crossd transfer``),
            ``"to_crossd"`` (fresh Cross-D kernels of :func:`crossd.to_crossd`, ``pretrain --crossd-init``),
            ``"checkpoint"`` (how :func:`crossd.load_checkpoint` places a 2D kernel in a 3D or Cross-D layer),
            ``"twin"`` (the 3D twin of hybrid 2D+3D training, :func:`crossd.convert.twin.volume_twin`),
            ``"evaluate"`` (``crossd evaluate --init``, on the data of :attr:`spatial_dims`).
        kernel: how a 2D kernel becomes a 3D one of a given shape (see :data:`crossd.convert.kernels.KernelFn`);
            ``None`` for inits that do not start from a 2D kernel (``crossd``, ``random``).
        conv: ``to_3d``'s builder of the 3D layer of a ``Conv2d``/``CrossDConv`` (:mod:`crossd.convert.conv_3d`).
        transposed: ``to_3d``'s builder for a ``ConvTranspose2d``; ``None``: the :attr:`fallback` init's is used.
        fallback: the init used for layers this one has no form for (transposed convolutions; for an init that
            :attr:`needs_crossd`, a plain ``Conv2d`` a Cross-D model kept), noted in the conversion report.
        needs_checkpoint: the evaluation needs a checkpoint for it (``random`` does not).
        needs_crossd: it reads Cross-D layers' 3D kernels, so it needs a Cross-D model or checkpoint.
        angle0: from a Cross-D source it uses each layer's angle-0 2D kernel.
        uses_axis: its kernels are flat along the volume axis chosen by ``to_3d``'s ``axis``.
        spatial_dims: the data (2D images, 3D volumes) the evaluation accepts it on.
        segmentation: valid for the encoder of a 3D segmentation network.
        slice_axes: slice aggregation: the evaluation runs the plain 2D network on the slices along these volume
            axes (the ``axes`` of :class:`crossd.models.SliceModel`) instead of building a 3D network; ``None`` for
            every kernel init.
        same_as: the init this name is another spelling of.
    """

    name: str
    description: str
    uses: tuple[str, ...]
    kernel: KernelFn | None = None
    conv: ConvBuilder | None = None
    transposed: ConvBuilder | None = None
    fallback: str | None = None
    needs_checkpoint: bool = True
    needs_crossd: bool = False
    angle0: bool = False
    uses_axis: bool = False
    spatial_dims: tuple[int, ...] = (3,)
    segmentation: bool = True
    slice_axes: str | None = None
    same_as: str | None = None


KERNEL_INITS: dict[str, KernelInit] = {}
"""Every registered init by name, in registration order."""


def register_init(init: KernelInit) -> KernelInit:
    """Add ``init`` to :data:`KERNEL_INITS` (a ``ValueError`` if its name is taken or a use is unknown)."""
    if init.name in KERNEL_INITS:
        raise ValueError(f"init {init.name!r} is registered already")
    unknown = set(init.uses) - set(USES)
    if unknown:
        raise ValueError(f"init {init.name!r}: unknown uses {sorted(unknown)}; expected some of {tuple(USES)}")
    KERNEL_INITS[init.name] = init
    return init


def init_names(use: str) -> tuple[str, ...]:
    """The init names accepted by ``use`` (one of :data:`USES`), in registration order."""
    if use not in USES:
        raise ValueError(f"unknown use {use!r}; expected one of {tuple(USES)}")
    return tuple(name for name, init in KERNEL_INITS.items() if use in init.uses)


def get_init(name: str, use: str | None = None, field: str = "init") -> KernelInit:
    """The registered init ``name``, if ``use`` (one of :data:`USES`) accepts it.

    Raises:
        SettingsError: for an unknown name or one ``use`` does not accept, listing the names it does accept;
            ``field`` is the parameter the name came from.
    """
    init = KERNEL_INITS.get(name)
    if init is None or (use is not None and use not in init.uses):
        names = init_names(use) if use is not None else tuple(KERNEL_INITS)
        where = "" if init is None else f" to {USES[use]}"
        raise SettingsError(f"{name!r} is unknown{where}; expected one of {', '.join(names)}", field=field)
    return init


def planar_init(name: str, description: str, uses: tuple[str, ...], kernel: KernelFn) -> KernelInit:
    """An init whose 3D layers are plain ``Conv3d``/``ConvTranspose3d`` holding ``kernel``'s 3D kernels, made from
    each layer's 2D kernel (a Cross-D source's angle-0 one)."""
    return KernelInit(
        name,
        description,
        uses,
        kernel=kernel,
        conv=planar_conv(kernel),
        transposed=transposed_conv(kernel),
        angle0=True,
    )


def _inflated(kernel2d: Tensor, shape: Sequence[int]) -> Tensor:
    return inflate_kernel(kernel2d, shape[2])


def _centred(kernel2d: Tensor, shape: Sequence[int]) -> Tensor:
    return center_kernel(kernel2d, shape[2])


def _acs(kernel2d: Tensor, shape: Sequence[int]) -> Tensor:
    return acs_kernel(kernel2d)


def _flat(kernel2d: Tensor, shape: Sequence[int]) -> Tensor | None:
    """2.5D: the 2D kernel flat along the axis where ``shape`` has size 1 (any, for ``1 x 1`` kernels), or ``None``
    when ``shape`` has no such axis (a full 3D kernel, or a 2.5D transposed convolution's ``stride``-deep one)."""
    for axis in "dhw":
        kernel = flat_kernel(kernel2d, axis)
        if tuple(kernel.shape) == tuple(shape):
            return kernel
    return None


register_init(
    KernelInit(
        "crossd",
        "a Cross-D layer's 3D kernel copied into Conv3d (rotation heads dropped)",
        ("to_3d", "twin", "evaluate"),
        conv=crossd_conv,
        fallback="i3d",
        needs_crossd=True,
        spatial_dims=(2, 3),
    )
)
register_init(
    planar_init(
        "i3d",
        "the 2D kernel repeated over depth, divided by its size (I3D)",
        ("to_3d", "checkpoint", "twin", "evaluate"),
        _inflated,
    )
)
register_init(KernelInit("inflate", "as i3d", ("to_crossd", "checkpoint"), kernel=_inflated, same_as="i3d"))
register_init(
    planar_init(
        "center",
        "the 2D kernel in the central depth slice, zeros elsewhere",
        ("to_3d", "to_crossd", "checkpoint", "evaluate"),
        _centred,
    )
)
register_init(
    KernelInit(
        "acs",
        "the 2D kernel's output channels split over axial/coronal/sagittal views (ACS)",
        ("to_3d", "twin", "evaluate"),
        kernel=_acs,
        conv=acs_conv(_acs),
        fallback="i3d",
        angle0=True,
    )
)
register_init(
    KernelInit(
        "random",
        "a fresh random init: only the architecture is kept",
        ("to_3d", "to_crossd", "evaluate"),
        conv=planar_conv(None),
        transposed=transposed_conv(None),
        needs_checkpoint=False,
        spatial_dims=(2, 3),
    )
)
register_init(
    KernelInit(
        "2.5d",
        "2.5D: the 2D kernel as a 3D kernel of size 1 along one axis; slices mix only through pooling",
        ("to_3d", "checkpoint", "evaluate"),
        kernel=_flat,
        conv=flat_conv,
        transposed=flat_transposed_conv,
        angle0=True,
        uses_axis=True,
    )
)
register_init(
    KernelInit(
        "regular2d",
        "the regular 2D network as trained (of a Cross-D checkpoint: its angle-0 kernels)",
        ("evaluate",),
        angle0=True,
        spatial_dims=(2,),
        segmentation=False,
    )
)
register_init(
    KernelInit(
        "slices",
        "slice aggregation: the regular 2D network on every axial slice, the slice features pooled",
        ("evaluate",),
        angle0=True,
        segmentation=False,
        slice_axes="d",
    )
)
register_init(
    KernelInit(
        "slices3",
        "slice aggregation over the slices of all three orientations, the three pooled features concatenated",
        ("evaluate",),
        angle0=True,
        segmentation=False,
        slice_axes="dhw",
    )
)
