"""Every model of ``tests/model_table.py`` through ``to_crossd`` and ``to_3d``: the table of docs/models.md.

Per model (untrained, no downloads): ``to_crossd(model, init="center")`` with its default even-kernel policy,
a 2D forward on a 64x64 image and the angle-0 kernels checked; then ``to_3d`` of the Cross-D model with every init
(and ``init="i3d"`` and ``"2.5d"`` of the plain 2D model), each with its kernels checked against
``tests/kernel_oracle.py`` and run under ``check_really_3d`` on a 32^3 volume; then the ``init="crossd"`` model on
48^3 and 64^3 volumes, also under the really-3D check. A cell is "ok" only if nothing failed and nothing was
reported unconverted.

    python benchmarks/model_matrix.py --out docs/models.md            # the whole table (a few minutes, 1 thread)
    python benchmarks/model_matrix.py timm/convnext_nano --out -        # some rows, printed
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

from crossd import to_3d, to_crossd
from crossd.convert import INITS_3D
from crossd.convert.really_3d import check_really_3d
from crossd.io import save_text
from crossd.nn.crossd_conv import CrossDConv

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _test_module(name: str) -> ModuleType:
    """``tests/<name>.py`` (the model table and the test oracles) loaded from its file: ``tests/`` is no package
    and stays off ``sys.path``; under pytest the module the tests already imported is reused."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: kernel_oracle imports reference by this name
        spec.loader.exec_module(module)
    return sys.modules[name]


_test_module("reference")  # what kernel_oracle imports
angle0_kernels, kernel_problems = (
    getattr(_test_module("kernel_oracle"), n) for n in ("angle0_kernels", "kernel_problems")
)
MODELS, build_model = (getattr(_test_module("model_table"), n) for n in ("MODELS", "build_model"))

SIZES = (32, 48, 64)
HEADER = (
    "| model | to_crossd (2D) | to_3d inits (kernels, 32³) | 32³ | 48³ | 64³ | really 3D | seconds |\n"
    "|---|---|---|---|---|---|---|---|"
)


def _crossd_row(model: torch.nn.Module, channels: int) -> tuple[torch.nn.Module, dict, str]:
    """The Cross-D model, its angle-0 kernels and the table cell."""
    crossd, report = to_crossd(model, init="center", example_input=torch.randn(1, channels, 64, 64), return_report=True)
    planars = angle0_kernels(crossd)
    source = dict(model.named_modules())
    wrong = [
        name
        for name, m in crossd.named_modules()
        if isinstance(m, CrossDConv)
        and not torch.allclose(planars[name], source[name.removesuffix(".layer")].weight.double(), atol=1e-6)
    ]
    shifted = sum("shift mode" in why for why in report.notes.values())
    cell = "ok" if report.ok and not wrong else f"FAIL {_brief(report.unconverted or dict.fromkeys(wrong, 'kernel'))}"
    return crossd, planars, cell + (f" ({shifted} even kernels: shift)" if shifted else "")


def _brief(found: dict) -> str:
    """The first three ``name: problem`` entries of a report, and how many more."""
    items = [f"{name or 'model'}: {why}" for name, why in list(found.items())[:3]]
    return "; ".join(items) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")


def _volume(channels: int, side: int) -> torch.Tensor:
    return torch.randn(1, channels, side, side, side)


def _to_3d_cell(source: torch.nn.Module, init: str, channels: int, planars: dict | None) -> tuple[str, bool]:
    model3d, report = to_3d(source, init=init, example_input=_volume(channels, 32), return_report=True)
    problems = kernel_problems(source, model3d, init, planars)
    if report.ok and not problems:
        return "ok", True
    return f"{init}: FAIL {_brief(report.unconverted or problems)}", False


def row(name: str) -> str:
    """One table row for a model of the table (markdown)."""
    start = time.perf_counter()
    entry = MODELS[name]
    model = build_model(name)
    crossd, planars, crossd_cell = _crossd_row(model, entry.in_channels)
    cells, really = [], True
    for source, init in [*((crossd, init) for init in INITS_3D), (model, "i3d"), (model, "2.5d")]:
        cell, ok = _to_3d_cell(source, init, entry.in_channels, planars if source is crossd else None)
        cells.append(cell)
        really &= ok
    inits = (
        "ok (" + ", ".join(INITS_3D) + ", i3d and 2.5d from 2D)" if really else "; ".join(c for c in cells if c != "ok")
    )
    model3d = to_3d(crossd, init="crossd").eval()
    sizes = []
    for side in SIZES:
        found = check_really_3d(model3d, _volume(entry.in_channels, side))
        with torch.no_grad():
            out = model3d(_volume(entry.in_channels, side))
        expected = (1, 2, side, side, side) if entry.segmentation else (1, 2)
        good = not found and tuple(out.shape) == expected and bool(torch.isfinite(out).all())
        sizes.append(f"ok {tuple(out.shape)}" if good else f"FAIL {_brief(found) or tuple(out.shape)}")
        really &= not found
    seconds = time.perf_counter() - start
    return f"| {name} | {crossd_cell} | {inits} | {' | '.join(sizes)} | {'yes' if really else 'NO'} | {seconds:.0f} |"


START, END = "<!-- model-matrix:start -->", "<!-- model-matrix:end -->"


def replace_table(path: Path, table: str) -> str:
    """The text of ``path`` with the part between the model-matrix markers replaced (the table alone if none)."""
    text = path.read_text() if path.exists() else ""
    if START not in text or END not in text:
        return f"{START}\n{table}{END}\n"
    before, rest = text.split(START, 1)
    return f"{before}{START}\n{table}{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"rows to build (default: all of {sorted(MODELS)})")
    parser.add_argument("--out", default="docs/models.md", help="markdown file to write, or - to print")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name in args.models or list(MODELS):
        rows.append(row(name))
        print(rows[-1], flush=True)
    if args.out == "-":
        return 0
    table = (
        f"{HEADER}\n"
        + "\n".join(rows)
        + (
            f"\n\nProduced by `python benchmarks/model_matrix.py --out {args.out}` "
            f"(torch {torch.__version__}, {args.threads} thread(s)).\n"
        )
    )
    save_text(replace_table(Path(args.out), table), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
