"""Speed and memory of Cross-D against plain convolutions, as ratios measured in one process.

Every timing interleaves its candidates (one run of each, in turn, ``repeats`` times) and reports the median, so
the ratios survive a noisy, shared machine better than absolute times do. Three measurements:

- :func:`layer_ratios`: forward + backward of one layer (rotation head included) at the convolution shapes of
  a torchvision ResNet-18, ``CrossDConv`` (``path="auto"`` and each path forced) against ``nn.Conv2d``;
- :func:`step_ratios`: a whole SGD training step of ``to_crossd(resnet18())`` against ``resnet18()``;
- :func:`peak_memory`: the maximum resident set size of that training step, each model in its own process.

``reference`` (a Python file defining the authors' layer, never bundled) adds its layer timings.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

from crossd.convert import to_crossd
from crossd.errors import SettingsError
from crossd.nn import CrossDConv
from crossd.nn.rotation_head import RotationHead
from crossd.ops.conv import choose_path
from crossd.ops.input_side import output_size

PATHS = ("auto", "weight", "input")


@dataclass(frozen=True)
class LayerShape:
    """One convolution of ResNet-18: channels, kernel, stride, padding and the input's spatial size."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    size: int


def resnet18_shapes(image_size: int) -> list[LayerShape]:
    """``conv1`` and the first 3x3 convolution of each stage of a torchvision ResNet-18 fed ``image_size`` images."""
    s = output_size(output_size(image_size, 7, 2, 3, 1), 3, 2, 1, 1)  # conv1, then max-pool
    shapes = [LayerShape("conv1 7x7 s2", 3, 64, 7, 2, 3, image_size)]
    for i, channels in enumerate((64, 128, 256, 512)):
        if i:
            s = output_size(s, 3, 2, 1, 1)
        shapes.append(LayerShape(f"layer{i + 1} {channels}->{channels} {s}x{s}", channels, channels, 3, 1, 1, s))
    return shapes


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict:
    """Median seconds per call of each candidate, timed in turn ``repeats`` times after ``warmup`` calls."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _fwd_bwd(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()

    return run


def load_reference_layer(path: str | Path) -> type[nn.Module]:
    """The layer class of a user's copy of the authors' file (``FILE`` or ``FILE:ClassName``).

    Without a class name the file must define exactly one ``nn.Module`` subclass; it is built as
    ``cls(in_channels, out_channels, kernel_size, stride=..., padding=...)``.
    """
    file, _, class_name = str(path).partition(":")
    if not Path(file).is_file():
        raise SettingsError(f"{file}: no such file", field="reference")
    spec = importlib.util.spec_from_file_location("crossd_reference_layer", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
    }
    if class_name:
        if class_name not in classes:
            raise SettingsError(
                f"{file} defines no nn.Module named {class_name!r}; it has {sorted(classes)}", field="reference"
            )
        return classes[class_name]
    if len(classes) != 1:
        raise SettingsError(
            f"{file} defines {len(classes)} nn.Module classes {sorted(classes)}; name one as FILE:Class",
            field="reference",
        )
    return next(iter(classes.values()))


def layer_ratios(
    modes: list[str], batch_size: int, image_size: int, repeats: int, reference: str | None = None
) -> list[dict]:
    """Per ResNet-18 layer shape: ``nn.Conv2d`` forward+backward time and each Cross-D variant's ratio to it.

    ``"head only"`` is the rotation head alone (part of every Cross-D time): the share no path can remove.
    """
    reference_cls = load_reference_layer(reference) if reference else None
    rows = []
    for shape in resnet18_shapes(image_size):
        torch.manual_seed(0)
        x = torch.randn(batch_size, shape.in_channels, shape.size, shape.size)
        x.requires_grad_(shape.in_channels != 3)  # the stem's input needs no gradient inside a network
        conf = (shape.in_channels, shape.out_channels, shape.kernel_size, shape.stride, shape.padding)
        candidates = {"conv2d": _fwd_bwd(nn.Conv2d(*conf, bias=False), x)}
        for mode in modes:
            for path in PATHS:
                candidates[f"{mode}/{path}"] = _fwd_bwd(CrossDConv(*conf, mode=mode, path=path), x)
        candidates["head only"] = _fwd_bwd(RotationHead(shape.in_channels), x)
        if reference_cls is not None:
            layer = reference_cls(*conf[:3], stride=shape.stride, padding=shape.padding)
            candidates["reference"] = _fwd_bwd(layer, x)
        medians = interleaved_medians(candidates, repeats)
        base = medians.pop("conv2d")
        out_pixels = output_size(shape.size, shape.kernel_size, shape.stride, shape.padding, 1) ** 2
        auto = choose_path(shape.out_channels, 1, shape.kernel_size, out_pixels)
        rows.append(
            {**asdict(shape), "conv2d_ms": base * 1e3, "auto_path": auto}
            | {f"{name} x": t / base for name, t in medians.items()}
        )
    return rows


def _train_step(model: nn.Module, batch_size: int, image_size: int) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, 3, image_size, image_size)
    labels = torch.randint(0, 1000, (batch_size,))
    model.train()

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return run


def build_model(kind: str) -> nn.Module:
    """``"plain"`` (torchvision ResNet-18) or a Cross-D mode name (the same model through ``to_crossd``)."""
    torch.manual_seed(0)
    model = resnet18(weights=None)
    return model if kind == "plain" else to_crossd(model, mode=kind, inplace=True)


def step_ratios(modes: list[str], batch_size: int, image_size: int, repeats: int) -> dict:
    """Seconds per SGD step of plain ResNet-18 and each Cross-D mode's ratio to it, with images per second."""
    kinds = ["plain", *modes]
    medians = interleaved_medians({k: _train_step(build_model(k), batch_size, image_size) for k in kinds}, repeats)
    base = medians["plain"]
    return {
        "plain_ms": base * 1e3,
        "images_per_s": {k: batch_size / t for k, t in medians.items()},
        "ratio": {k: medians[k] / base for k in modes},
    }


def _memory_status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field in MiB (Linux): ``VmRSS`` now, ``VmHWM`` the peak of this process.

    ``VmHWM`` belongs to the process image, unlike ``getrusage``'s ``ru_maxrss``, which a child started by
    ``fork``/``exec`` inherits from its parent's size at the fork.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not found in /proc/self/status (peak memory needs Linux)")


def measure_step_rss(kind: str, batch_size: int, image_size: int, threads: int, steps: int = 3) -> dict:
    """Memory (MiB) of ``steps`` training steps of ``build_model(kind)`` in this process (Linux).

    Returns ``max_rss`` (the process's peak resident set) and ``training``: the peak minus the resident set just
    before the first step (libraries, model and data already loaded), i.e. what training itself adds.
    """
    torch.set_num_threads(threads)
    step = _train_step(build_model(kind), batch_size, image_size)
    before = _memory_status_mib("VmRSS")
    for _ in range(steps):
        step()
    peak = _memory_status_mib("VmHWM")
    return {"max_rss": peak, "training": peak - before}


def peak_memory(modes: list[str], batch_size: int, image_size: int) -> dict:
    """Memory of a training step (:func:`measure_step_rss`), each model in a fresh process, and ratios to plain."""
    rss = {}
    for kind in ["plain", *modes]:
        code = (
            "import json; from crossd.bench import measure_step_rss; "
            f"print(json.dumps(measure_step_rss({kind!r}, {batch_size}, {image_size}, {torch.get_num_threads()})))"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"memory probe for {kind!r} failed: {done.stderr.strip().splitlines()[-1:]}")
        rss[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "mib": rss,
        "max_rss_ratio": {k: rss[k]["max_rss"] / rss["plain"]["max_rss"] for k in modes},
        "training_ratio": {k: rss[k]["training"] / rss["plain"]["training"] for k in modes},
    }


def run_benchmarks(
    modes: list[str],
    batch_size: int,
    image_size: int,
    repeats: int,
    memory: bool = False,
    reference: str | None = None,
) -> dict:
    """All measurements as one JSON-serialisable dict (see the module docstring)."""
    result = {
        "config": {
            "modes": modes,
            "batch_size": batch_size,
            "image_size": image_size,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "layers": layer_ratios(modes, batch_size, image_size, repeats, reference),
        "step": step_ratios(modes, batch_size, image_size, repeats),
    }
    if memory:
        result["memory"] = peak_memory(modes, batch_size, image_size)
    return result


def format_report(result: dict) -> str:
    """A plain-text table of :func:`run_benchmarks`' result."""
    cfg = result["config"]
    lines = [
        f"batch {cfg['batch_size']}, {cfg['image_size']}x{cfg['image_size']}, medians of {cfg['repeats']} "
        f"interleaved repeats, {cfg['threads']} threads, torch {cfg['torch']}",
        "",
        "layer forward+backward, ratio to nn.Conv2d (rotation head included):",
    ]
    keys = [k for k in result["layers"][0] if k.endswith(" x")]
    lines.append(f"{'layer':<28}{'conv2d ms':>10}{'auto':>8}" + "".join(f"{k[:-2]:>16}" for k in keys))
    for row in result["layers"]:
        cells = "".join(f"{row[k]:>16.2f}" for k in keys)
        lines.append(f"{row['name']:<28}{row['conv2d_ms']:>10.1f}{row['auto_path']:>8}{cells}")
    step = result["step"]
    lines += ["", f"ResNet-18 SGD step: plain {step['plain_ms']:.0f} ms"]
    for kind, ratio in step["ratio"].items():
        lines.append(f"  crossd {kind}: {ratio:.2f}x plain ({step['images_per_s'][kind]:.1f} img/s)")
    if "memory" in result:
        mem = result["memory"]
        plain = mem["mib"]["plain"]
        lines += [
            "",
            f"peak memory of a training step: plain max RSS {plain['max_rss']:.0f} MiB, "
            f"of which training adds {plain['training']:.0f} MiB",
        ]
        for kind in mem["max_rss_ratio"]:
            lines.append(
                f"  crossd {kind}: max RSS {mem['mib'][kind]['max_rss']:.0f} MiB = {mem['max_rss_ratio'][kind]:.2f}x, "
                f"training adds {mem['mib'][kind]['training']:.0f} MiB = {mem['training_ratio'][kind]:.2f}x plain"
            )
    return "\n".join(lines)
