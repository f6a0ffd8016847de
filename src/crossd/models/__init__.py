"""Model factory over torchvision names, and 3D networks."""

from crossd.models.factory import ModelSpec, available_architectures, create_model, load_2d_model, read_spec

__all__ = ["ModelSpec", "available_architectures", "create_model", "load_2d_model", "read_spec"]
