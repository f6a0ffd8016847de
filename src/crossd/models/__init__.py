"""Model factory over torchvision names, 3D networks, and 2D networks applied slice by slice to volumes."""

from crossd.models.factory import ModelSpec, available_architectures, create_model, load_2d_model, read_spec
from crossd.models.slice_model import SliceModel
from crossd.models.unet3d import UNet3D, encoder_stages

__all__ = [
    "ModelSpec",
    "SliceModel",
    "UNet3D",
    "available_architectures",
    "create_model",
    "encoder_stages",
    "load_2d_model",
    "read_spec",
]
