"""Model factory over torchvision names, and 3D networks."""

from crossd.models.factory import ModelSpec, available_architectures, create_model, load_2d_model, read_spec
from crossd.models.unet3d import UNet3D, encoder_stages

__all__ = [
    "ModelSpec",
    "UNet3D",
    "available_architectures",
    "create_model",
    "encoder_stages",
    "load_2d_model",
    "read_spec",
]
