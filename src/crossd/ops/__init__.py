"""Functional Cross-D operators: rotation maths, the kernel slice and the 2D convolution paths."""

from crossd.ops.conv import choose_group_path, choose_path, crossd_conv2d
from crossd.ops.rotation import first_order_rotation, head_to_axis_angle, normalize_axis, rodrigues_rotation
from crossd.ops.slicing import MODES, check_mode, kernel_slice, sample_points, slice_operator

__all__ = [
    "MODES",
    "check_mode",
    "choose_group_path",
    "choose_path",
    "crossd_conv2d",
    "first_order_rotation",
    "head_to_axis_angle",
    "kernel_slice",
    "normalize_axis",
    "rodrigues_rotation",
    "sample_points",
    "slice_operator",
]
