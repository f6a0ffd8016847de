"""The kernel init names, in one table: which 3D (or Cross-D) kernel a 2D kernel becomes, and where each name is
accepted. ``to_3d``, ``to_crossd``, ``load_checkpoint``, the configs and the CLI choices all read it."""

from __future__ import annotations

from typing import NamedTuple


class KernelInit(NamedTuple):
    """One init name: what it does, the name it is a spelling of (if any), and where it is accepted
    (``"to_3d"``: :func:`crossd.to_3d`, ``crossd transfer``/``evaluate --init``; ``"to_crossd"``: fresh Cross-D
    kernels of :func:`crossd.to_crossd` and ``pretrain --crossd-init``; ``"checkpoint"``: how
    :func:`crossd.load_checkpoint` places a 2D kernel in a 3D or Cross-D layer)."""

    name: str
    description: str
    uses: tuple[str, ...]
    same_as: str | None = None


KERNEL_INITS = (
    KernelInit("crossd", "a Cross-D layer's 3D kernel copied into Conv3d (rotation heads dropped)", ("to_3d",)),
    KernelInit("i3d", "the 2D kernel repeated over depth, divided by its size (I3D)", ("to_3d", "checkpoint")),
    KernelInit("inflate", "as i3d", ("to_crossd", "checkpoint"), same_as="i3d"),
    KernelInit(
        "center", "the 2D kernel in the central depth slice, zeros elsewhere", ("to_3d", "to_crossd", "checkpoint")
    ),
    KernelInit("acs", "the 2D kernel's output channels split over axial/coronal/sagittal views (ACS)", ("to_3d",)),
    KernelInit("random", "a fresh random init: only the architecture is kept", ("to_3d", "to_crossd")),
)
USES = ("to_3d", "to_crossd", "checkpoint")


def init_names(use: str) -> tuple[str, ...]:
    """The init names accepted by ``use`` (one of :data:`USES`), in table order."""
    if use not in USES:
        raise ValueError(f"unknown use {use!r}; expected one of {USES}")
    return tuple(init.name for init in KERNEL_INITS if use in init.uses)
