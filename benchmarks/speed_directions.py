"""Directions tried to bring the Cross-D training step closer to a plain one, timed against each other in one run.

Each section interleaves its candidates (``crossd.bench.interleaved_medians``) and prints ratios to the plain
``nn.Conv2d`` forward+backward (or the plain ResNet-18 step) of the same shape, at ResNet-18's shapes for
``--batch-size`` and ``--size``:

- ``head``: the rotation head as four modules in turn against :class:`crossd.nn.rotation_head.FusedHead`
  (what ``RotationHead`` uses below 16 input channels);
- ``bmm``: per-sample kernels applied as one batched GEMM over unfolded patches (``torch.bmm`` on
  ``(B, Co, Ci K^2) x (B, Ci K^2, L)``, kernels rebuilt in backward, a prototype defined here) against the
  grouped-convolution weight side and the input side of ``crossd.ops``;
- ``bf16``: a whole ResNet-18 SGD step, plain and Cross-D, in float32 and under CPU bf16 autocast;
- ``parts``: forward only, the pieces each exact path is made of, against the plain ``conv2d`` forward: building
  the per-sample kernels (weight side), the grouped convolution and a loop of per-sample dense ``conv2d`` calls
  with those kernels already built, the input side's tap mixing ``K^2 -> K^3`` and its GEMM with ``K^3`` taps.
  This is the yardstick for the arithmetic floors: a piece that costs more than its multiply-adds say is
  memory-bound.

Usage::

    PYTHONPATH=src python benchmarks/speed_directions.py --threads 1 --json benchmarks/results_directions.json
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from crossd.bench import build_model, interleaved_medians, resnet18_shapes
from crossd.io import save_json
from crossd.nn.rotation_head import FusedHead, RotationHead
from crossd.ops.input_side import InputSideConv, output_shape, unfold_taps
from crossd.ops.slicing import slice_operator
from crossd.ops.weight_side import WeightSideConv, fold_batch, sliced_kernels


class BatchedGemmConv(torch.autograd.Function):
    """Prototype: per-sample kernels ``(B, Co, Ci K^2)`` times ``F.unfold`` patches ``(B, Ci K^2, L)``, one ``bmm``.

    ``apply(x (B, Ci, H, W), weight (Co, Ci, K, K, K), op (B, K^2, K^3), stride, padding)`` -> ``(B, Co, Ho, Wo)``;
    groups 1, dilation 1; the kernels are rebuilt in backward, never stored.
    """

    @staticmethod
    def forward(ctx, x, weight, op, stride, padding):  # noqa: D102
        ctx.save_for_backward(x, weight, op)
        ctx.conf = (stride, padding)
        b, _, h, w = x.shape
        ho, wo = output_shape((h, w), weight.shape[-1], (stride,) * 2, (padding,) * 2, (1, 1))
        cols = F.unfold(x, weight.shape[-1], 1, padding, stride)
        return torch.bmm(_kernels(weight, op), cols).view(b, -1, ho, wo)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, weight, op = ctx.saved_tensors
        stride, padding = ctx.conf
        b, co, k = x.shape[0], weight.shape[0], weight.shape[-1]
        g = grad_out.reshape(b, co, -1)
        kernels = _kernels(weight, op)
        grad_k = torch.bmm(g, F.unfold(x, k, 1, padding, stride).transpose(1, 2))  # (B, Co, Ci K^2)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = F.fold(torch.bmm(kernels.transpose(1, 2), g), x.shape[2:], k, 1, padding, stride)
        grad_k = grad_k.view(b, -1, k * k)  # (B, Co Ci, K^2)
        w_flat = weight.reshape(-1, k**3)
        grad_w = (grad_k.transpose(0, 1).reshape(w_flat.shape[0], -1) @ op.reshape(-1, k**3)).view(weight.shape)
        grad_op = torch.matmul(grad_k.transpose(1, 2), w_flat)
        return grad_x, grad_w, grad_op, None, None


def _kernels(weight, op):
    """``(B, Co, Ci K^2)``: each sample's kernel, rows ``o``, columns ``(c, ky, kx)`` as ``F.unfold``'s."""
    co, k = weight.shape[0], weight.shape[-1]
    return (
        (op.reshape(-1, k**3) @ weight.reshape(-1, k**3).t())
        .view(op.shape[0], k * k, -1)
        .transpose(1, 2)
        .reshape(op.shape[0], co, -1)
    )


def _fwd_bwd(fn, args, params):
    """Forward and backward of ``fn(*args).sum()``, with the gradients of ``params`` cleared first."""

    def run():
        for p in params:
            p.grad = None
        fn(*args).sum().backward()

    return run


def _unfused_head(head: RotationHead, x):
    r = head[3](head[2](head[1](head[0](x)))).flatten(2)
    return (r * torch.softmax(r, dim=-1)).sum(-1)


def _fused_head(head: RotationHead, x):
    conv1, bn, _, conv2 = head
    w1, w2 = conv1.weight.flatten(1), conv2.weight.flatten(1)
    return FusedHead.apply(x, w1, conv1.bias, bn.weight, bn.bias, w2, conv2.bias, None, None, bn.eps)[0]


def head_section(batch: int, size: int, repeats: int) -> list[dict]:
    rows = []
    for shape in resnet18_shapes(size)[:4]:
        x = torch.randn(batch, shape.in_channels, shape.size, shape.size, requires_grad=shape.in_channels != 3)
        conv = nn.Conv2d(shape.in_channels, shape.out_channels, shape.kernel_size, shape.stride, shape.padding)
        head = RotationHead(shape.in_channels)
        params = [x, *conv.parameters(), *head.parameters()]
        candidates = {
            "conv2d": _fwd_bwd(conv, (x,), params),
            "modules in turn": _fwd_bwd(_unfused_head, (head, x), params),
            "fused": _fwd_bwd(_fused_head, (head, x), params),
        }
        medians = interleaved_medians(candidates, repeats)
        base = medians.pop("conv2d")
        rows.append({"layer": shape.name, "conv2d_ms": base * 1e3} | {k: v / base for k, v in medians.items()})
    return rows


def bmm_section(batch: int, size: int, repeats: int) -> list[dict]:
    rows = []
    for shape in resnet18_shapes(size)[1:]:
        ci, k = shape.in_channels, shape.kernel_size
        x = torch.randn(batch, ci, shape.size, shape.size, requires_grad=True)
        weight = torch.randn(ci, ci, k, k, k, requires_grad=True)
        op = slice_operator(torch.randn(batch, 3), torch.rand(batch) - 0.5, k, "rotate").requires_grad_()
        conv = nn.Conv2d(ci, ci, k, 1, k // 2, bias=False)
        conf = ((1, 1), (k // 2,) * 2, (1, 1), 1)
        params = (x, weight, op, conv.weight)
        medians = interleaved_medians(
            {
                "conv2d": _fwd_bwd(conv, (x,), params),
                "grouped conv (weight side)": _fwd_bwd(WeightSideConv.apply, (x, weight, op, *conf), params),
                "input side": _fwd_bwd(InputSideConv.apply, (x, weight, op, *conf), params),
                "batched GEMM": _fwd_bwd(BatchedGemmConv.apply, (x, weight, op, 1, k // 2), params),
            },
            repeats,
        )
        base = medians.pop("conv2d")
        rows.append({"layer": shape.name, "conv2d_ms": base * 1e3} | {k: v / base for k, v in medians.items()})
    return rows


def bf16_section(batch: int, size: int, repeats: int) -> dict:
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))
    candidates = {}
    for kind in ("plain", "rotate"):
        model = build_model(kind).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for precision in ("float32", "bf16"):

            def step(model=model, optimizer=optimizer, precision=precision):
                autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else None
                optimizer.zero_grad(set_to_none=True)
                with autocast or contextlib.nullcontext():
                    loss = F.cross_entropy(model(images), labels)
                loss.backward()
                optimizer.step()

            candidates[f"{kind} {precision}"] = step
    medians = interleaved_medians(candidates, repeats)
    base = medians["plain float32"]
    return {"plain_float32_ms": base * 1e3} | {k: v / base for k, v in medians.items()}


def _parts(shape, batch: int) -> dict:
    """Forward-only candidates of the ``parts`` section for one ResNet-18 layer shape."""
    ci, k, pad = shape.in_channels, shape.kernel_size, (shape.kernel_size // 2,) * 2
    x = torch.randn(batch, ci, shape.size, shape.size)
    weight, conv = torch.randn(ci, ci, k, k, k), nn.Conv2d(ci, ci, k, 1, k // 2, bias=False)
    op = slice_operator(torch.randn(batch, 3), torch.rand(batch) - 0.5, k, "rotate")
    kernels = sliced_kernels(weight, op)  # (B Co, Ci, K, K), channels-last
    per_sample = [kernels[i * ci : (i + 1) * ci].contiguous() for i in range(batch)]
    taps = unfold_taps(x, k, (1, 1), pad, (1, 1))
    mixed = torch.bmm(taps.transpose(1, 2), op).reshape(-1, ci * k**3)
    w_gemm = weight.reshape(ci, -1).t()
    return {
        "conv2d": lambda: conv(x),
        "build kernels": lambda: sliced_kernels(weight, op),
        "grouped conv, kernels built": lambda: F.conv2d(fold_batch(x), kernels, None, 1, pad, 1, batch),
        "per-sample conv2d loop, kernels built": lambda: [
            F.conv2d(x[i : i + 1], per_sample[i], None, 1, pad) for i in range(batch)
        ],
        "input side: tap mixing": lambda: torch.bmm(taps.transpose(1, 2), op),
        "input side: GEMM": lambda: mixed @ w_gemm,
    }


@torch.no_grad()
def parts_section(batch: int, size: int, repeats: int) -> list[dict]:
    rows = []
    for shape in resnet18_shapes(size)[1:]:
        medians = interleaved_medians(_parts(shape, batch), repeats)
        base = medians.pop("conv2d")
        rows.append({"layer": shape.name, "conv2d_fwd_ms": base * 1e3} | {k: v / base for k, v in medians.items()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sections = {"head": head_section, "bmm": bmm_section, "bf16": bf16_section, "parts": parts_section}
    parser.add_argument("--sections", nargs="+", choices=tuple(sections), default=list(sections))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result: dict = {"config": vars(args) | {"threads": torch.get_num_threads(), "torch": torch.__version__}}
    for name in args.sections:
        result[name] = sections[name](args.batch_size, args.size, args.repeats)
        rows = result[name] if isinstance(result[name], list) else [result[name]]
        print(f"{name}: ratios to the plain convolution / step")
        for row in rows:
            print("  " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    if args.json:
        save_json(result, args.json)


if __name__ == "__main__":
    main()
