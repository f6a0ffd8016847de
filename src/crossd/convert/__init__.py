"""Converters between 2D, Cross-D and 3D models, kernel initialisers and checkpoint readers."""

from crossd.convert.checkpoints import CHECKPOINT_INITS, LoadReport, load_checkpoint
from crossd.convert.kernels import center_kernel, inflate_kernel, planar_kernel, shift_align
from crossd.convert.layers_3d import LayerNorm3d, layer_to_3d
from crossd.convert.published import load_published, read_state_dict
from crossd.convert.report import ConversionReport, ConversionWarning, check_forward, scan_2d_layers
from crossd.convert.to_3d import INITS_3D, to_3d
from crossd.convert.to_crossd import CROSSD_INITS, to_crossd

__all__ = [
    "CHECKPOINT_INITS",
    "CROSSD_INITS",
    "ConversionReport",
    "ConversionWarning",
    "INITS_3D",
    "LayerNorm3d",
    "LoadReport",
    "center_kernel",
    "check_forward",
    "inflate_kernel",
    "layer_to_3d",
    "load_checkpoint",
    "load_published",
    "planar_kernel",
    "read_state_dict",
    "scan_2d_layers",
    "shift_align",
    "to_3d",
    "to_crossd",
]
