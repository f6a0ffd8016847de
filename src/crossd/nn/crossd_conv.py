"""``CrossDConv``: a layer that owns a 3D kernel and uses it on 2D and 3D inputs."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossd.errors import SettingsError
from crossd.nn.rotation_head import RotationHead
from crossd.ops.conv import PATHS, Path, crossd_conv2d, triple
from crossd.ops.groups import Granularity, check_granularity, group_mean, group_size
from crossd.ops.rotation import PLANE_SAMPLERS
from crossd.ops.slicing import ROTATING_MODES, check_mode, slice_operator

PlaneSampling = Literal["head", "random", "grid"]
PLANE_SAMPLING = ("head", *PLANE_SAMPLERS)


def _cubic_kernel_size(kernel_size: int | tuple[int, ...]) -> int:
    sizes = {kernel_size} if isinstance(kernel_size, int) else set(kernel_size)
    if len(sizes) != 1:
        raise SettingsError(
            f"must be one size on every axis (a cubic kernel), got {kernel_size!r}", field="kernel_size"
        )
    return int(sizes.pop())


class CrossDConv(nn.Module):
    """A convolution whose parameter is a 3D kernel, usable on 2D images and on 3D volumes.

    - 2D input ``(B, Ci, H, W)``: a rotation head predicts an axis-angle per sample, the 3D kernel is sliced
      (:func:`crossd.ops.kernel_slice`) and each sample is convolved with its slice -> ``(B, Co, Ho, Wo)``.
    - 3D input ``(B, Ci, D, H, W)``: ``conv3d`` with the same kernel -> ``(B, Co, Do, Ho, Wo)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv3d``
            (``kernel_size`` must be cubic; 2D inputs use the ``(h, w)`` entries of per-axis values).
        mode: ``"rotate"`` (default; exact rotation, central-plane slice), ``"project"`` (exact rotation, the
            kernel's projection along the rotated normal by the Fourier slice theorem: ``W.sum(depth)`` at angle
            0) or ``"shift"`` (the published formula).
        granularity: how many planes a 2D batch of ``B`` gets (:mod:`crossd.ops.groups`): ``"sample"`` (default,
            the paper's method: one rotation per sample), ``"batch"`` (one for the whole batch: a single plain
            convolution) or an integer ``G``: the batch is cut into contiguous groups of ``ceil(B / G)`` samples
            (the last may be smaller; ``G >= B`` is per sample, ``G = 1`` is ``"batch"``), each group gets one
            plane: the head's output ``(4,)`` averaged over the group, then turned into an axis-angle, and with
            sampled planes one draw per group. A layer is then a few ordinary convolutions (same multiply-adds as
            a plain one): faster, less adaptive. It applies in training and evaluation. Under ``torchrun`` the
            groups are per process (each cuts its own share of the batch).
        path: how the 2D convolution is computed (``"auto"``, ``"weight"``, ``"input"``, and for plane groups
            ``"stacked"``, ``"loop"``; :func:`crossd.ops.crossd_conv2d`); same numbers.
        plane_sampling: ``"head"`` (default: the plane is the head's rotation of the central plane),
            ``"random"`` or ``"grid"`` (``rotate`` and ``project`` modes, training only: each sample's plane, or
            each group's (``granularity``), is first turned by a uniformly random rotation from SO(3)
            (``random``) or from the 24 rotations of the cube (``grid``: axial, coronal and sagittal views with
            in-plane quarter turns), so every voxel of the 3D kernel is trained; evaluation uses the head alone).

    Attributes:
        weight: the 3D kernel ``(Co, Ci/groups, K, K, K)``.
        bias: ``(Co,)`` or ``None``.
        rotation_head: :class:`RotationHead`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: str | int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = False,
        mode: str = "rotate",
        granularity: Granularity = "sample",
        path: Path = "auto",
        plane_sampling: PlaneSampling = "head",
    ):
        super().__init__()
        k = _cubic_kernel_size(kernel_size)
        check_mode(mode, k)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise SettingsError(
                f"{groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})", field="groups"
            )
        check_granularity(granularity)
        if path not in PATHS:
            raise SettingsError(f"must be one of {PATHS}, got {path!r}", field="path")
        check_plane_sampling(plane_sampling, mode)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise SettingsError(f"must be an int, a tuple, 'same' or 'valid', got {padding!r}", field="padding")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (k, k, k)
        self.stride = triple(stride, "stride")
        self.padding = padding if isinstance(padding, str) else triple(padding, "padding")
        self.dilation = triple(dilation, "dilation")
        self.mode, self.granularity, self.path = mode, granularity, path
        self.plane_sampling = plane_sampling
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, k, k, k))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.rotation_head = RotationHead(in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise ``weight`` and ``bias`` as ``nn.Conv3d`` does (Kaiming-uniform over the 3D fan-in)."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / fan_in**0.5
            nn.init.uniform_(self.bias, -bound, bound)

    def rotation(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Axes ``(n, 3)`` (unnormalised) and angles ``(n,)`` for a 2D input ``(B, Ci, H, W)``: one per plane group
        (``n = B`` per sample, ``1`` per batch), from the head's output averaged over each group."""
        v = group_mean(self.rotation_head(x), group_size(x.shape[0], self.granularity))
        return RotationHead.axis_angle(v)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(
                f"CrossDConv expects a 2D batch (B, C, H, W) or a 3D batch (B, C, D, H, W), "
                f"got a {x.dim()}D tensor of shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"CrossDConv expects {self.in_channels} input channels, got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        if x.dim() == 5:
            return F.conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        axis, angle = self.rotation(x)
        base = None
        if self.training and self.plane_sampling != "head":
            base = PLANE_SAMPLERS[self.plane_sampling](axis.shape[0], axis.dtype, axis.device)
        op = slice_operator(axis, angle, self.kernel_size[0], self.mode, base)
        return crossd_conv2d(
            x, self.weight, op, self.bias, self.stride, self.padding, self.dilation, self.groups, self.path
        )

    def extra_repr(self) -> str:
        co, cig, k = self.weight.shape[:3]
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, mode={self.mode!r}, weight=({co}, {cig}, {k}, {k}, {k})"
        )
        if self.dilation != (1, 1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.granularity != "sample":
            s += f", granularity={self.granularity!r}"
        if self.plane_sampling != "head":
            s += f", plane_sampling={self.plane_sampling!r}"
        return s


def check_plane_sampling(plane_sampling: str, mode: str) -> None:
    """Raise :class:`~crossd.errors.SettingsError` unless ``plane_sampling`` is known and fits ``mode`` (sampled
    planes need a rotation)."""
    if plane_sampling not in PLANE_SAMPLING:
        raise SettingsError(f"must be one of {PLANE_SAMPLING}, got {plane_sampling!r}", field="plane_sampling")
    if plane_sampling != "head" and mode not in ROTATING_MODES:
        raise SettingsError(
            f"{plane_sampling!r} needs mode 'rotate' or 'project', got mode {mode!r}", field="plane_sampling"
        )


def set_plane_sampling(
    model: nn.Module, plane_sampling: PlaneSampling, granularity: Granularity | None = None
) -> nn.Module:
    """Set ``plane_sampling`` (and ``granularity`` when given) on every :class:`CrossDConv` of ``model`` (in place);
    returns ``model``."""
    if granularity is not None:
        check_granularity(granularity)
    for module in model.modules():
        if isinstance(module, CrossDConv):
            check_plane_sampling(plane_sampling, module.mode)
            module.plane_sampling = plane_sampling
            module.granularity = module.granularity if granularity is None else granularity
    return model
