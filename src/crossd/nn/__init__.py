"""Layers: parameters and shapes only; the maths lives in :mod:`crossd.ops`."""

from crossd.nn.acs_conv import ACSConv3d, acs_split
from crossd.nn.crossd_conv import CrossDConv
from crossd.nn.rotation_head import RotationHead

__all__ = ["ACSConv3d", "CrossDConv", "RotationHead", "acs_split"]
