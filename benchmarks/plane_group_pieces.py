"""Where the time of plane groups goes: a Cross-D layer and a ResNet-18 step taken apart, ratios to plain.

Per ResNet-18 layer shape (batch 16, 112² by default), forward + backward, each candidate's median time over the
plain ``conv2d``'s, all interleaved in one run:

- ``layer``: the whole ``CrossDConv`` (``project`` mode, sampled planes, ``path="auto"``);
- ``head``: its rotation head alone;
- ``planes``: the slice operators of the groups and the ``n`` 2D kernels built from the 3D kernel (no image);
- ``conv``: the convolution alone with those ``n`` kernels given (the formulation ``auto`` picks).

Per whole SGD step: plain ResNet-18, the Cross-D one, the Cross-D one with every rotation head's output detached
(no backward through the heads and the planes), the Cross-D one with every head replaced by a constant (no head
at all) and the SGD update alone on each model's parameters (the 3D kernels' share).

    PYTHONPATH=src python benchmarks/plane_group_pieces.py --granularity batch 4 --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn

from crossd.bench import _fwd_bwd, _train_step, build_model, interleaved_medians, label, resnet18_shapes
from crossd.io import save_json
from crossd.nn import CrossDConv
from crossd.nn.crossd_conv import set_plane_sampling
from crossd.ops.conv import GROUP_CONVS, choose_group_path, crossd_conv2d
from crossd.ops.groups import group_count, group_size, parse_granularity
from crossd.ops.input_side import output_size
from crossd.ops.rotation import random_rotation
from crossd.ops.slicing import apply_slice_operator, slice_operator


class ConstantHead(nn.Module):
    """A rotation head that costs nothing: the same ``(B, 4)`` output (angle 0) for every input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 4)


class DetachedHead(nn.Module):
    """The rotation head's forward only: its output detached, so nothing flows back into it or the planes."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.head(x)


def _with_heads(model: nn.Module, wrap) -> nn.Module:
    for module in model.modules():
        if isinstance(module, CrossDConv):
            module.rotation_head = wrap(module.rotation_head)
    return model


def _planes(weight: torch.Tensor, n: int, k: int):
    axis = torch.randn(n, 3, requires_grad=True)
    angle = torch.rand(n, requires_grad=True)

    def run() -> None:
        weight.grad = axis.grad = angle.grad = None
        op = slice_operator(axis, angle, k, "project", random_rotation(n))
        apply_slice_operator(weight, op).sum().backward()

    return run


def _conv_alone(x, weight, kernels, shape, path):
    """The convolution with the ``n`` kernels given (no slicing), or for the input side with fixed operators."""
    pair = ((shape.stride,) * 2, (shape.padding,) * 2, (1, 1))
    if path in GROUP_CONVS:
        return _fwd_bwd(_Call(lambda inp: GROUP_CONVS[path](inp, kernels, *pair, 1)), x)
    if path == "conv2d":
        return _fwd_bwd(_Call(lambda inp: F.conv2d(inp, kernels[0], None, *pair)), x)
    op = slice_operator(torch.randn(x.shape[0], 3), torch.rand(x.shape[0]), shape.kernel_size, "project")
    return _fwd_bwd(_Call(lambda inp: crossd_conv2d(inp, weight, op, None, *pair, path=path)), x)


class _Call(nn.Module):
    """A function as a module, for :func:`crossd.bench._fwd_bwd`."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def layer_pieces(granularity, batch: int, size: int, repeats: int) -> list[dict]:
    """Per layer shape: ratio to ``conv2d`` of the whole layer and of each piece, with the path ``auto`` takes."""
    n = group_count(batch, group_size(batch, granularity))
    rows = []
    for shape in resnet18_shapes(size):
        torch.manual_seed(0)
        k = shape.kernel_size
        x = torch.randn(batch, shape.in_channels, shape.size, shape.size, requires_grad=shape.in_channels != 3)
        conf = (shape.in_channels, shape.out_channels, k, shape.stride, shape.padding)
        layer = set_plane_sampling(CrossDConv(*conf, mode="project", granularity=granularity), "random")
        out_pixels = output_size(shape.size, k, shape.stride, shape.padding, 1) ** 2
        path = (
            "conv2d" if n == 1 else choose_group_path(shape.out_channels, shape.in_channels, 1, k, out_pixels, batch, n)
        )
        kernels = torch.randn(n, shape.out_channels, shape.in_channels, k, k, requires_grad=True)
        candidates = {
            "conv2d": _fwd_bwd(nn.Conv2d(*conf, bias=False), x),
            "layer": _fwd_bwd(layer, x),
            "head": _fwd_bwd(layer.rotation_head, x),
            "planes": _planes(layer.weight, n, k),
            "conv": _conv_alone(x, layer.weight, kernels, shape, path),
        }
        medians = interleaved_medians(candidates, repeats)
        base = medians.pop("conv2d")
        rows.append(
            {"name": shape.name, "conv2d_ms": base * 1e3, "path": path} | {k: v / base for k, v in medians.items()}
        )
    return rows


def _update(model: nn.Module):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return optimizer.step


def step_pieces(granularity, batch: int, size: int, repeats: int) -> dict:
    """Whole-step ratios to plain: Cross-D, Cross-D with constant heads, and the SGD update alone."""
    crossd = build_model("project", granularity, "random")
    headless = _with_heads(build_model("project", granularity, "random"), lambda head: ConstantHead())
    forward_heads = _with_heads(build_model("project", granularity, "random"), DetachedHead)
    plain = build_model("plain")
    candidates = {
        "plain step": _train_step(plain, batch, size),
        "crossd step": _train_step(crossd, batch, size),
        "crossd step, heads forward only": _train_step(forward_heads, batch, size),
        "crossd step, constant heads": _train_step(headless, batch, size),
        "plain SGD update": _update(build_model("plain")),
        "crossd SGD update": _update(build_model("project", granularity, "random")),
    }
    medians = interleaved_medians(candidates, repeats)
    base = medians["plain step"]
    return {"plain_step_ms": base * 1e3} | {k: v / base for k, v in medians.items() if k != "plain step"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--granularity", nargs="+", type=parse_granularity, default=["batch", 4])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = {k: v for k, v in vars(args).items() if k != "json"}
    result = {"config": config | {"threads": torch.get_num_threads(), "torch": torch.__version__}}
    for granularity in args.granularity:
        name = label("project", granularity)
        layers = layer_pieces(granularity, args.batch_size, args.size, args.repeats)
        step = step_pieces(granularity, args.batch_size, args.size, args.repeats)
        result[name] = {"layers": layers, "step": step}
        print(f"{name}, random planes, batch {args.batch_size}, {args.size}², ratio to plain (fwd+bwd):")
        print(f"  {'layer':<26}{'conv2d ms':>10}{'path':>9}{'layer':>8}{'head':>8}{'planes':>8}{'conv':>8}")
        for row in layers:
            cells = "".join(f"{row[c]:>8.2f}" for c in ("layer", "head", "planes", "conv"))
            print(f"  {row['name']:<26}{row['conv2d_ms']:>10.1f}{row['path']:>9}{cells}")
        print(f"  step: plain {step['plain_step_ms']:.0f} ms; " + ", ".join(
            f"{k} {v:.2f}x" for k, v in step.items() if k != "plain_step_ms"))  # fmt: skip
    if args.json:
        save_json(json.loads(json.dumps(result, default=str)), args.json)


if __name__ == "__main__":
    main()
