"""Is a 3D model really 3D? Run it once and record every image-only operation its forward pass performs.

A converted network that runs on volumes can still treat depth as batch (a ``conv2d`` on ``x[:, :, d]``), pool
over two of the three spatial axes (``x.mean((2, 3))`` in a squeeze-excite block), or normalise images: shapes
then still work out and the numbers are silently wrong. :func:`check_really_3d` watches every torch function
call of one forward pass (a :class:`torch.overrides.TorchFunctionMode`) and names the module that made it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from crossd.convert.report import failed_forward, module_stack
from crossd.errors import SettingsError

# Operations that need a volume (N, C, D, H, W) in a 3D model; on a 4D tensor they work on images.
_VOLUME_OPS = {"interpolate", "upsample", "grid_sample", "batch_norm", "instance_norm", "group_norm", "layer_norm"}
# Reductions that, over exactly two of the four non-batch axes of a volume, are an image reduction.
_REDUCTIONS = {"mean", "sum", "amax", "amin", "var", "std", "var_mean", "std_mean", "logsumexp", "nansum", "nanmean"}


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


def _reduced_axes(args: tuple, kwargs: dict, ndim: int) -> tuple[int, ...] | None:
    dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dims is None or isinstance(dims, bool):
        return None
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return tuple(sorted(d % ndim for d in dims))


def image_operation(func, args: tuple, kwargs: dict, result) -> str | None:
    """Why one torch call of a 3D forward pass is an image operation, or ``None`` if it is not one.

    Flagged: any function whose name ends in ``2d`` (``conv2d``, ``max_pool2d``, ``adaptive_avg_pool2d``,
    ``dropout2d``, ...); ``interpolate``/``grid_sample``/batch, instance, group and layer norm on a 4D tensor;
    ``layer_norm`` over more than one trailing axis of a volume; ``pad`` of a volume on its last two axes only;
    a reduction (``mean``, ``sum``, ``amax``, ...) over exactly two of the four non-batch axes of a volume; and any
    call that turns a 5D tensor into a 4D one (depth folded into batch, or a slice taken), unless the volume is
    already pooled to one voxel.
    """
    name = _name(func)
    tensor = args[0] if args and isinstance(args[0], Tensor) else kwargs.get("input")
    if not isinstance(tensor, Tensor):
        return None
    shape = tuple(tensor.shape)
    if name.endswith("2d"):
        return f"{name} on {shape}"
    if name in _VOLUME_OPS and tensor.dim() == 4:
        return f"{name} on a 4D tensor {shape}"
    if name == "layer_norm" and tensor.dim() == 5:
        normalized = kwargs.get("normalized_shape", args[1] if len(args) > 1 else ())
        if len(tuple(normalized)) > 1:
            return f"layer_norm over the last {len(tuple(normalized))} axes of {shape}"
    if name == "pad" and tensor.dim() == 5:
        pad = kwargs.get("pad", args[1] if len(args) > 1 else ())
        if len(pad) == 4:
            return f"pad of {shape} on its last two axes only"
    if name in _REDUCTIONS and tensor.dim() == 5:
        axes = _reduced_axes(args, kwargs, 5)
        if axes is not None and len(axes) == 2 and 0 not in axes:
            return f"{name} over axes {axes} of {shape} (an image reduction)"
    folds = tensor.dim() == 5 and tensor[0, 0].numel() > 1  # a pooled (N, C, 1, 1, 1) may be squeezed
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    images = [tuple(out.shape) for out in outputs if isinstance(out, Tensor) and out.dim() == 4]
    if folds and images:
        return f"{name} turns {shape} into a 4D tensor {images[0]}"
    return None


class _ImageOperationRecorder(TorchFunctionMode):
    """Records ``(running module, reason)`` for every image operation called while active."""

    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.found: dict[str, list[str]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        reason = image_operation(func, args, kwargs, result)
        if reason is not None:
            reasons = self.found.setdefault(self.stack[-1] if self.stack else "", [])
            if reason not in reasons:
                reasons.append(reason)
        return result


def check_really_3d(model: nn.Module, example: Tensor) -> dict[str, str]:
    """Run ``model(example)`` once (eval mode, no gradients) and name every module that did image-only work.

    Args:
        model: a 3D model, e.g. from :func:`crossd.to_3d`.
        example: a volume ``(N, C, D, H, W)``; it should have ``D > 1`` and ``D != H`` so that depth mistakes
            cannot hide.

    Returns:
        ``{}`` when the forward pass is really 3D, else ``{module name: "conv2d on (1, 8, 16, 16); ..."}``
        (see :func:`image_operation` for what is flagged; ``""`` names the model itself). A forward pass that
        fails is reported as by :func:`crossd.convert.report.check_forward`. Training flags are restored.
    """
    if example.dim() != 5:
        raise SettingsError(f"must be a volume (N, C, D, H, W), got shape {tuple(example.shape)}", field="example")
    with module_stack(model) as stack:
        recorder = _ImageOperationRecorder(stack)
        try:
            with torch.no_grad(), recorder:
                model(example)
        except Exception as exc:  # any failure is the thing to report, by module name
            return {**{k: "; ".join(v) for k, v in recorder.found.items()}, **failed_forward(stack, example, exc)}
    return {name: "; ".join(reasons) for name, reasons in recorder.found.items()}
