"""`crossd demo --quick` end to end: every report file exists, the report's numbers are the run's, reruns reuse."""

import json
import re

import imageio.v3 as iio
import pytest

from crossd.cli import main
from crossd.report.tables import mean_std


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--output-dir", str(out), "--no-progress"]) == 0
    return out


def test_quick_demo_writes_the_report_and_its_files(demo):
    for name in ("report.md", "demo.json", "accuracy.png", "training_curves.png", "filters.gif", "kernel3d.png"):
        assert (demo / name).is_file(), name
    for name in ("data/mni152_tissue_2d_16.npz", "data/mni152_tissue_3d_16.npz", "evaluate/results.json"):
        assert (demo / name).is_file(), name
    for conv in ("crossd", "regular"):
        assert (demo / f"pretrain-{conv}" / "model.safetensors").is_file()
    assert iio.imread(demo / "filters.gif", index=None).shape == (6, round(3.6 * 80), round(3.2 * 80 * 3), 3)
    report = (demo / "report.md").read_text()
    for picture in ("accuracy.png", "training_curves.png", "filters.gif", "kernel3d.png"):
        assert f"]({picture})" in report


def test_report_numbers_come_from_the_run(demo):
    report = (demo / "report.md").read_text()
    results = json.loads((demo / "evaluate" / "results.json").read_text())
    assert [m["method"] for m in results["results"]] == ["crossd", "acs", "i3d", "random"]
    for method in results["results"]:
        assert len(method["folds"]) == 2
        row = next(line for line in report.splitlines() if line.startswith(f"| {method['method']} |"))
        assert mean_std(method["accuracy_mean"], method["accuracy_std"]) in row
    summary = json.loads((demo / "demo.json").read_text())
    for conv in ("crossd", "regular"):
        metrics = json.loads((demo / f"pretrain-{conv}" / "metrics.json").read_text())
        row = next(line for line in report.splitlines() if line.startswith(f"| {conv} ResNet-18 |"))
        assert f"| {100 * metrics['test']['accuracy']:.1f} |" in row
        assert summary["pretrain"][conv]["metrics"] == metrics
    total = summary["timings"]["total"]["wall"]
    assert re.search(rf"in \*\*{total:.0f} s\*\*", report)


def test_rerun_reuses_finished_stages_and_refuses_other_settings(demo):
    assert main(["demo", "--quick", "--output-dir", str(demo), "--no-progress"]) == 0
    summary = json.loads((demo / "demo.json").read_text())
    assert summary["pretrain"]["crossd"]["reused"] and summary["pretrain"]["regular"]["reused"]
    assert "| reused |" in (demo / "report.md").read_text()
    assert main(["demo", "--quick", "--output-dir", str(demo), "--pretrain-epochs", "2", "--no-progress"]) == 2
    assert main(["demo", "--folds", "1", "--output-dir", str(demo)]) == 2
    assert main(["demo", "--quick", "--samples-3d", "60", "--output-dir", str(demo), "--no-progress"]) == 2
    assert main(["demo", "--quick", "--epochs", "3", "--output-dir", str(demo), "--no-progress"]) == 2


def test_paper_protocol_keeps_its_own_constants():
    from crossd.demo import DemoConfig

    paper = DemoConfig(protocol="paper").resolved()
    assert paper.epochs is None and paper.eval_lr is None  # the protocol's 15 epochs and lr 1e-3
    assert DemoConfig(protocol="paper", quick=True).resolved().epochs == 2  # reduced only by --quick/--epochs
    assert DemoConfig().resolved().eval_lr == 1e-2
    with pytest.raises(ValueError, match="demo protocol"):
        DemoConfig(protocol="linear").resolved()


def test_segmentation_second_task_reuses_the_run_and_reports_dice(demo):
    assert main(["demo", "--quick", "--segmentation", "--output-dir", str(demo), "--no-progress"]) == 0
    results = json.loads((demo / "segmentation" / "results.json").read_text())
    assert [m["method"] for m in results["results"]] == ["crossd", "acs", "i3d", "random"]
    report = (demo / "report.md").read_text()
    assert "## 4. Second task: grey/white-matter segmentation" in report
    crossd_dice = results["results"][0]["dice_mean_mean"]
    assert f"| crossd | {100 * crossd_dice:.2f}" in report
