"""Every model of docs/models.md: to_crossd, every to_3d init with its kernels checked, really 3D at 32^3 (the
Cross-D, ACS and 2.5D models).

The 48^3 and 64^3 columns come from ``benchmarks/model_matrix.py``; one small run of it is checked here too.
"""

import importlib
import re
from pathlib import Path

import pytest
import torch
from kernel_oracle import angle0_kernels, kernel_problems
from model_table import MODELS, NUM_CLASSES, build_model
from torch import nn

from crossd import CrossDConv, to_3d, to_crossd
from crossd.convert import INITS_3D

pytestmark = pytest.mark.usefixtures("one_thread")
_CACHE: dict[str, tuple] = {}


def _converted(name: str):
    """``(2D model, Cross-D model, its report, its angle-0 kernels)``, built once per model for the whole module."""
    if name not in _CACHE:
        pytest.importorskip(MODELS[name].library)
        model = build_model(name)
        image = torch.randn(1, MODELS[name].in_channels, 64, 64)
        crossd, report = to_crossd(model, init="center", example_input=image, return_report=True)
        _CACHE[name] = (model, crossd, report, angle0_kernels(crossd))
    return _CACHE[name]


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    _CACHE.clear()


@pytest.mark.parametrize("name", list(MODELS))
def test_to_crossd_keeps_every_kernel_at_angle_zero(name):
    model, crossd, report, planars = _converted(name)
    assert report.ok, report.unconverted
    source = dict(model.named_modules())
    layers = {n.removesuffix(".layer"): m for n, m in crossd.named_modules() if isinstance(m, CrossDConv)}
    assert layers and set(layers) == set(report.converted)
    for layer_name in layers:
        kernel = planars.get(layer_name, planars.get(f"{layer_name}.layer"))
        torch.testing.assert_close(kernel, source[layer_name].weight.double(), rtol=0, atol=1e-6)
    even = [n for n, why in report.notes.items() if "shift mode (even_kernels)" in why]
    assert all(layers[n].mode == "shift" and layers[n].kernel_size[0] % 2 == 0 for n in even)
    assert bool(even) == ("convnext" in name)


@pytest.mark.parametrize("name", list(MODELS))
def test_to_3d_every_init_builds_the_right_kernels(name):
    model, crossd, _, planars = _converted(name)
    for source, init in [*((crossd, init) for init in INITS_3D), (model, "i3d"), (model, "2.5d")]:
        model3d, report = to_3d(source, init=init, return_report=True)
        assert report.ok, (init, report.unconverted)
        assert kernel_problems(source, model3d, init, planars if source is crossd else None) == {}, init
    built = dict(model3d.named_modules())  # 2.5d of the 2D model: every kernel is the 2D kernel, bit for bit
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(torch.equal(getattr(built[n], "layer", built[n]).weight[:, :, 0], m.weight) for n, m in convs)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("init", ["crossd", "acs", "2.5d"])
def test_3d_forward_is_really_3d(name, init):
    _, crossd, _, _ = _converted(name)
    entry = MODELS[name]
    volume = torch.randn(1, entry.in_channels, 32, 32, 32)
    model3d, report = to_3d(crossd, init=init, example_input=volume, return_report=True)
    assert report.really_3d is True and report.ok, report.unconverted
    with torch.no_grad():
        out = model3d.eval()(volume)
    assert out.shape == ((1, NUM_CLASSES, 32, 32, 32) if entry.segmentation else (1, NUM_CLASSES))
    assert torch.isfinite(out).all()


def test_the_matrix_script_writes_its_table(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    monkeypatch.syspath_prepend("benchmarks")
    matrix = importlib.import_module("model_matrix")
    out = tmp_path / "models.md"
    out.write_text(f"# intro\n{matrix.START}\nold table\n{matrix.END}\nafter\n")
    assert matrix.main(["timm/regnety_002", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# intro\n") and text.endswith("after\n") and "old table" not in text
    row = next(line for line in text.splitlines() if line.startswith("| timm/regnety_002"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "ok" and cells[2].startswith("ok (crossd") and cells[6] == "yes"
    assert [c.split()[0] for c in cells[3:6]] == ["ok", "ok", "ok"]


def test_readme_lists_the_same_models():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Models the converters are checked on", 1)[1].split("\n\n#", 1)[0]
    listed = set()
    for line in section.splitlines():
        cells = line.strip("|").split("|")
        if len(cells) == 2 and "`" in cells[1]:
            library = cells[0].split()[0].lower()
            listed |= {f"{library}/{name}" for name in re.findall(r"`([^`]+)`", cells[1])}
    assert listed == set(MODELS)
