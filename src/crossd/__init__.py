"""crossd: pretrain 3D convolution kernels on 2D images and transfer them to 3D models (Cross-D Conv).

Yavuz & Yang, "Cross-D Conv: Cross-Dimensional Transferable Knowledge Base via Fourier Shifting Operation",
arXiv 2411.02441.
"""

from crossd.convert import load_checkpoint, load_published, to_3d, to_crossd
from crossd.models.from_2d import load_3d_model
from crossd.nn import ACSConv3d, CrossDConv

__version__ = "0.1.0"

__all__ = [
    "ACSConv3d",
    "CrossDConv",
    "load_3d_model",
    "load_checkpoint",
    "load_published",
    "to_3d",
    "to_crossd",
    "__version__",
]
