"""One registry of 3D twins of 2D layer types, filled with :func:`register_twin` by the modules that know the layers
(:mod:`crossd.convert.layers_3d`: torch and torchvision layers; :mod:`crossd.convert.forward_twins`: torchvision
models; :mod:`crossd.convert.timm_layers`: timm's, registered when timm is installed).

Two kinds of twin, told apart by what is registered:

- a *forward twin* is a subclass of the 2D type that only changes ``forward`` (or a method it calls); the module's
  class is swapped to it (:func:`forward_twin`), so parameters, children and ``state_dict`` keys stay. It is matched
  by exact type, so a user's subclass with its own ``forward`` is never overridden.
- a *layer twin* is any other callable ``module -> nn.Module | None`` that builds the 3D layer from the 2D one's
  attributes (:func:`layer_to_3d`). It is matched by ``isinstance``: the registered class nearest in the module's
  MRO wins (timm's ``BatchNormAct2d`` before torch's ``BatchNorm2d``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

LayerTwin = Callable[[nn.Module], "nn.Module | None"]
Twin = TypeVar("Twin")

_LAYER_TWINS: dict[type[nn.Module], LayerTwin] = {}
_FORWARD_TWINS: dict[type[nn.Module], type[nn.Module]] = {}


def register_twin(*layers2d: type[nn.Module]) -> Callable[[Twin], Twin]:
    """Decorator registering its target as the 3D twin of each 2D type in ``layers2d``: a forward twin if it is a
    subclass of that type, else a layer twin (see the module docstring). Returns the target unchanged."""

    def register(twin: Twin) -> Twin:
        for layer in layers2d:
            if isinstance(twin, type) and issubclass(twin, layer):
                _FORWARD_TWINS[layer] = twin
            elif callable(twin):
                _LAYER_TWINS[layer] = twin
            else:
                raise TypeError(f"a twin of {layer.__name__} must be a subclass of it or a callable, got {twin!r}")
        return twin

    return register


def forward_twin(module: nn.Module) -> type[nn.Module] | None:
    """The forward twin class registered for ``type(module)`` exactly, or ``None``."""
    return _FORWARD_TWINS.get(type(module))


def layer_to_3d(module: nn.Module) -> nn.Module | None:
    """The 3D twin of a non-convolution 2D layer, or ``None`` if no layer twin is registered for its type (or the
    twin declines, e.g. an ``Upsample`` mode without a 3D form).

    Registered: ``BatchNorm2d``, ``InstanceNorm2d``, torchvision's ``LayerNorm2d`` (-> ``LayerNorm3d``),
    max/avg/LP/adaptive pools (adaptive output sizes tripled), ``MaxUnpool2d``, zero/constant/reflection/
    replication/circular padding, ``Upsample``/``UpsamplingBilinear2d``/``UpsamplingNearest2d`` (bilinear and
    bicubic -> trilinear, nearest stays), ``Dropout2d``, channels-last ``Permute`` modules
    (:mod:`crossd.convert.layers_3d`), and timm's norms and fast pools (:mod:`crossd.convert.timm_layers`).
    Dimension-agnostic layers (``GroupNorm``, ``LayerNorm``, activations, ``Dropout``, ``Linear``, ``Flatten``,
    ...) need no twin.
    """
    for cls in type(module).__mro__:
        build = _LAYER_TWINS.get(cls)
        if build is not None:
            return build(module)
    return None
