"""Slice aggregation: a 2D classifier, unchanged, applied to every slice of a volume, the slice features pooled.

``SliceModel(model2d, axes="d", pool="mean")`` is the route medical-imaging work takes with a 2D network on volumes
besides converting its kernels to 3D (:func:`crossd.to_3d`): the 2D network's feature extractor (everything before
its classifier) encodes every slice, the features are pooled over the slices (mean, max, or a learned gated
attention as in Ilse et al. 2018, "Attention-based deep multiple instance learning") and a linear head classifies
the volume.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from crossd.errors import DataError, SettingsError
from crossd.nn.crossd_conv import CrossDConv

__all__ = ["AXES", "POOLS", "GatedAttentionPool", "SliceModel", "classifier_name"]

AXES = {"d": (2,), "h": (3,), "w": (4,), "dhw": (2, 3, 4)}
"""The ``axes`` of :class:`SliceModel`: the volume dimensions ``(B, C, D, H, W)`` sliced along."""
DEFAULT_CHUNK = 16
"""Slices per volume in one 2D forward (``benchmarks/slice_memory.py``: SliceModel(ResNet-18) on 64³ volumes
within 2x the memory of the 3D ResNet-18; see ``benchmarks/RESULTS.md``)."""


def classifier_name(model: nn.Module) -> str:
    """The qualified name of ``model``'s classifier: its last ``nn.Linear`` (registration order).

    Raises :class:`~crossd.errors.SettingsError` when the model has none."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise SettingsError(f"{type(model).__name__} has no nn.Linear classifier")
    return names[-1]


def _input_channels(model: nn.Module) -> int | None:
    """Input channels of the first (registered) convolution, ``None`` when there is none."""
    return next((m.in_channels for m in model.modules() if isinstance(m, (nn.Conv2d, CrossDConv))), None)


class MeanPool(nn.Module):
    """Mean over slices: ``(B, S, F)`` -> ``(B, F)``."""

    def forward(self, features: Tensor) -> Tensor:
        return features.mean(1)


class MaxPool(nn.Module):
    """Maximum over slices, per feature: ``(B, S, F)`` -> ``(B, F)``."""

    def forward(self, features: Tensor) -> Tensor:
        return features.amax(1)


class GatedAttentionPool(nn.Module):
    """Gated attention over slices (Ilse et al. 2018): weights ``a = softmax_s(w^T (tanh(V h_s) * sigmoid(U h_s)))``
    and the weighted sum ``sum_s a_s h_s``. The weights of a volume sum to 1.

    Args:
        features: ``F``, the size of a slice feature ``h_s``.
        hidden: the attention's hidden size (``V`` and ``U`` are ``hidden x F``).
    """

    def __init__(self, features: int, hidden: int = 128):
        super().__init__()
        self.attention = nn.Linear(features, hidden)
        self.gate = nn.Linear(features, hidden)
        self.score = nn.Linear(hidden, 1)

    def weights(self, features: Tensor) -> Tensor:
        """Slice weights: ``(B, S, F)`` -> ``(B, S)``, each row summing to 1."""
        hidden = torch.tanh(self.attention(features)) * torch.sigmoid(self.gate(features))
        return self.score(hidden).squeeze(-1).softmax(1)

    def forward(self, features: Tensor) -> Tensor:
        """``(B, S, F)`` -> ``(B, F)``."""
        return torch.einsum("bs,bsf->bf", self.weights(features), features)


POOLS = {"mean": MeanPool, "max": MaxPool, "attention": GatedAttentionPool}
"""The ``pool`` of :class:`SliceModel`: name -> module class (``attention`` takes the feature size)."""


@contextlib.contextmanager
def _running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Restore every buffer (BatchNorm running statistics, batch counts) of ``module`` on exit: a recomputed
    forward pass must not update the statistics a second time."""
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:  # the recomputation may stop early, by an exception, once it has what backward needs
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


class SliceModel(nn.Module):
    """A 2D classification network applied to every slice of a volume, its slice features pooled.

    ``model2d``'s last ``nn.Linear`` (:func:`classifier_name`) is its classifier; the rest, the classifier replaced
    by ``nn.Identity``, is the feature extractor. That is everything before the classifier for networks whose
    forward ends in pooling, flattening and a linear layer (torchvision, timm and MONAI classifiers, Cross-D
    networks through their 2D forward). For every orientation in ``axes`` the extractor encodes the ``S`` slices
    of every volume as a batch of ``B * S`` 2D images, ``pool`` reduces them to one feature per volume, and the head
    classifies it:

    - one orientation (``"d"``, ``"h"``, ``"w"``): the head is ``model2d``'s own classifier, so on a volume whose
      slices are all the same image the model returns ``model2d(image)`` (eval mode; every pool).
    - ``"dhw"``: the three orientations' pooled features are **concatenated** (``3F``), keeping which view a
      feature came from; the head is a new ``Linear(3F, classes)`` initialised as the mean of ``model2d``'s
      classifier over the three views (its weight repeated three times and divided by 3), so the untrained model
      returns the mean of the three single-orientation models' logits.

    Memory: with ``chunk`` the extractor runs on ``B * chunk`` images at a time (``chunk`` slices of every
    volume). When gradients are needed and there is more than one chunk, each chunk's activations are recomputed
    in the backward pass (``torch.utils.checkpoint``) instead of kept, so training holds one chunk's activations
    at a time; running statistics are updated once. In training mode BatchNorm then normalises each chunk with its
    own batch statistics; in eval mode the output does not depend on ``chunk``.

    Args:
        model2d: a 2D classifier taking ``(N, C2, H, W)`` images; used in place with ``inplace=True``, else copied.
        axes: ``"d"`` (axial slices ``(H, W)``), ``"h"`` (slices ``(D, W)``), ``"w"`` (slices ``(D, H)``) or
            ``"dhw"`` (all three).
        pool: ``"mean"``, ``"max"`` or ``"attention"`` (:class:`GatedAttentionPool`, learned; one pool shared by
            the orientations).
        chunk: slices per volume in one 2D forward; ``None``: all at once.
        inplace: use ``model2d`` itself (its classifier becomes ``nn.Identity`` and moves to the head).

    Input ``(B, C, D, H, W)``; ``C`` must be the 2D network's input channels ``C2``, or 1 (repeated to ``C2``, as a
    grey image is given to a colour network). Output ``(B, classes)`` logits.
    """

    def __init__(
        self,
        model2d: nn.Module,
        axes: str = "d",
        pool: str = "mean",
        chunk: int | None = DEFAULT_CHUNK,
        inplace: bool = False,
    ):
        super().__init__()
        if axes not in AXES:
            raise SettingsError(f"must be one of {tuple(AXES)}, got {axes!r}", field="axes")
        if pool not in POOLS:
            raise SettingsError(f"must be one of {tuple(POOLS)}, got {pool!r}", field="pool")
        if chunk is not None and chunk < 1:
            raise SettingsError(f"must be at least 1 (or None), got {chunk}", field="chunk")
        encoder = model2d if inplace else copy.deepcopy(model2d)
        name = classifier_name(encoder)
        classifier = encoder.get_submodule(name)
        encoder.set_submodule(name, nn.Identity())
        self.axes, self.chunk, self.features = axes, chunk, classifier.in_features
        self.in_channels = _input_channels(encoder)
        # registration order: the head is the model's last nn.Linear (crossd.evaluate replaces it)
        self.encoder = encoder
        self.pool = GatedAttentionPool(self.features) if pool == "attention" else POOLS[pool]()
        self.head = classifier if len(AXES[axes]) == 1 else _views_head(classifier, len(AXES[axes]))

    def extra_repr(self) -> str:
        return f"axes={self.axes!r}, chunk={self.chunk}, features={self.features}"

    def _check(self, x: Tensor) -> Tensor:
        """``x`` checked and its channels made the 2D network's."""
        if x.dim() != 5:
            raise DataError(f"SliceModel takes volumes (B, C, D, H, W), got shape {tuple(x.shape)}")
        c, expected = x.shape[1], self.in_channels
        if expected is None or c == expected:
            return x
        if c == 1:
            return x.expand(-1, expected, -1, -1, -1)
        raise DataError(
            f"SliceModel: the volumes have {c} channels, the 2D network takes {expected} (or 1, repeated); "
            f"got shape {tuple(x.shape)}"
        )

    def _encode(self, images: Tensor) -> Tensor:
        """``(N, C, h, w)`` -> ``(N, F)``."""
        features = self.encoder(images)
        if features.dim() != 2 or features.shape[1] != self.features:
            raise SettingsError(
                f"the 2D network's input to its classifier has shape {tuple(features.shape)}, not (N, "
                f"{self.features}): SliceModel needs a network whose forward ends in pooling, flattening and its "
                "classifier"
            )
        return features

    def slice_features(self, x: Tensor, axis: int) -> Tensor:
        """Features of every slice along ``axis`` (2, 3 or 4): ``(B, C, D, H, W)`` -> ``(B, S, F)``."""
        slices = x.movedim(axis, 1)  # (B, S, C, h, w)
        b, s = slices.shape[:2]
        step = s if self.chunk is None else self.chunk
        recompute = torch.is_grad_enabled() and step < s
        out = []
        for start in range(0, s, step):
            part = slices[:, start : start + step]
            images = part.reshape(-1, *part.shape[2:])
            if recompute:
                features = checkpoint(
                    self._encode,
                    images,
                    use_reentrant=False,
                    context_fn=lambda: (contextlib.nullcontext(), _running_stats_kept(self.encoder)),
                )
            else:
                features = self._encode(images)
            out.append(features.view(b, part.shape[1], -1))
        return torch.cat(out, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, D, H, W)`` -> ``(B, classes)``."""
        x = self._check(x)
        pooled = [self.pool(self.slice_features(x, axis)) for axis in AXES[self.axes]]
        return self.head(torch.cat(pooled, 1))


def _views_head(classifier: nn.Linear, views: int) -> nn.Linear:
    """``Linear(views * F, classes)`` computing the mean of ``classifier`` over the views' features."""
    head = nn.Linear(views * classifier.in_features, classifier.out_features, bias=classifier.bias is not None)
    head.to(classifier.weight.device, classifier.weight.dtype)
    with torch.no_grad():
        head.weight.copy_(classifier.weight.repeat(1, views) / views)
        if classifier.bias is not None:
            head.bias.copy_(classifier.bias)
    return head
