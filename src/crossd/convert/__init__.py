"""Converters between 2D, Cross-D and 3D models, kernel initialisers and checkpoint readers."""

from crossd.convert.checkpoints import CHECKPOINT_INITS, LoadReport, load_checkpoint
from crossd.convert.inits import KERNEL_INITS, KernelInit, get_init, init_names, register_init
from crossd.convert.kernels import acs_kernel, center_kernel, flat_kernel, inflate_kernel, planar_kernel, shift_align
from crossd.convert.layers_3d import LayerNorm3d
from crossd.convert.published import load_published, read_state_dict
from crossd.convert.really_3d import check_really_3d
from crossd.convert.report import ConversionReport, ConversionWarning, check_forward, scan_2d_layers
from crossd.convert.same_padding import PadSame
from crossd.convert.to_3d import INITS_3D, to_3d
from crossd.convert.to_crossd import CROSSD_INITS, EVEN_KERNEL_POLICIES, to_crossd
from crossd.convert.twins import layer_to_3d, register_twin

try:  # timm is optional: its layers' twins and "SAME"-padded layers are registered when it is installed
    from crossd.convert import timm_layers  # noqa: F401
except ImportError as error:
    if not (error.name or "").startswith("timm"):
        raise

__all__ = [
    "CHECKPOINT_INITS",
    "CROSSD_INITS",
    "EVEN_KERNEL_POLICIES",
    "ConversionReport",
    "ConversionWarning",
    "INITS_3D",
    "KERNEL_INITS",
    "KernelInit",
    "LayerNorm3d",
    "LoadReport",
    "PadSame",
    "acs_kernel",
    "center_kernel",
    "check_forward",
    "check_really_3d",
    "flat_kernel",
    "get_init",
    "inflate_kernel",
    "init_names",
    "layer_to_3d",
    "load_checkpoint",
    "load_published",
    "planar_kernel",
    "read_state_dict",
    "register_init",
    "register_twin",
    "scan_2d_layers",
    "shift_align",
    "to_3d",
    "to_crossd",
]
