"""`crossd demo --quick` end to end: every report file exists, the report's numbers are the run's, reruns reuse."""

import json
import re

import imageio.v3 as iio
import pytest

from crossd.cli import main
from crossd.demo.report import READABLE
from crossd.machine import machine
from crossd.report.tables import design_note, format_comparison, mean_std
from crossd.results import Comparison


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--volumes", "--baselines", "core", "--output-dir", str(out), "--quiet"]) == 0
    return out


def test_quick_demo_writes_the_report_and_its_files(demo):
    figures = ("accuracy.png", "training_curves.png", "filters.gif", "kernel3d.png", "planes.png")
    for name in ("report.md", "demo.json", *figures):
        assert (demo / name).is_file(), name
    data = ("data/mni152_tissue_2d_16.npz", "data/mni152_tissue_3d_16.npz", "data/mni152_tissue_3d_left_16.npz")
    for name in (*data, "evaluate/results.json"):
        assert (demo / name).is_file(), name
    for folder in ("crossd", "regular", "crossd-volumes", "regular-volumes"):
        assert (demo / f"pretrain-{folder}" / "model.safetensors").is_file()
    assert iio.imread(demo / "filters.gif", index=None).shape == (6, round(3.6 * 80), round(3.2 * 80 * 3), 3)
    report = (demo / "report.md").read_text()
    for picture in ("accuracy.png", "training_curves.png", "planes.png"):
        assert f"]({picture})" in report
    structure = json.loads((demo / "demo.json").read_text())["kernel_structure"]
    readable = max(structure.values()) >= READABLE
    for picture in ("kernel3d.png", "filters.gif"):  # shown only when they show more than noise
        assert (f"]({picture})" in report) == readable
    assert f"Cross-D centre slice r = {structure['crossd_centre']:.2f}" in report


def test_report_numbers_come_from_the_run(demo):
    report = (demo / "report.md").read_text()
    results = json.loads((demo / "evaluate" / "results.json").read_text())
    methods = ["crossd", "crossd+volumes", "acs", "i3d", "acs+volumes", "random"]
    assert [m["method"] for m in results["results"]] == methods
    for method in results["results"]:
        assert len(method["folds"]) == 2
        row = next(line for line in report.splitlines() if line.startswith(f"| {method['method']} |"))
        assert mean_std(method["accuracy_mean"], method["accuracy_std"]) in row
    summary = json.loads((demo / "demo.json").read_text())
    assert summary["machine"] == machine()
    cpu = summary["machine"]["cpu"] or "an unnamed CPU"
    assert f"of {cpu} (torch's CPU kernels: {summary['machine']['cpu_capability']};" in report
    for name in ("crossd", "regular", "crossd+volumes", "regular+volumes"):
        metrics = json.loads((demo / f"pretrain-{name.replace('+', '-')}" / "metrics.json").read_text())
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} ResNet-18 |"))
        assert f"| {100 * metrics['test']['accuracy']:.1f} |" in row
        assert summary["pretrain"][name]["metrics"] == metrics
    assert summary["pretrain"]["crossd+volumes"]["volumes"] and not summary["pretrain"]["crossd"]["volumes"]
    folds = {m["method"]: {(f["repeat"], f["fold"]): f["accuracy"] for f in m["folds"]} for m in results["results"]}
    margins = report[report.index("### Cross-D against each baseline") :]
    for method in ("crossd", "crossd+volumes"):
        row = next(line for line in margins.splitlines() if line.startswith(f"| {method} | "))
        for base in ("i3d", "acs", "acs+volumes"):
            test = summary["margins"][method][base]
            difference = sum(folds[method][k] - folds[base][k] for k in folds[base]) / len(folds[base])
            assert test["mean_difference"] == pytest.approx(difference, abs=1e-12)
            assert f"{100 * difference:+.1f} (" in row and format_comparison(Comparison.from_json(test), 1) in row
    # one run of 2 folds cannot be significant, and the report says so before its tables
    assert report.index(design_note(2)) < report.index("## 2. Transfer to 3D")
    assert "Study 6 of `docs/experiments.md`" in report and "crossd demo --study" in report
    assert f"    {summary['evaluate']['command']}\n" in report
    assert summary["evaluate"]["command"].startswith(f"crossd evaluate --data {demo / 'data'}")
    total = summary["timings"]["total"]["wall"]
    assert re.search(rf"in \*\*{total:.0f} s\*\*", report)


def test_rerun_reuses_finished_stages_and_refuses_other_settings(demo):
    assert (
        main(["demo", "--quick", "--volumes", "--baselines", "core", "--output-dir", str(demo), "--no-progress"]) == 0
    )
    summary = json.loads((demo / "demo.json").read_text())
    assert summary["pretrain"]["crossd"]["reused"] and summary["pretrain"]["regular"]["reused"]
    assert "| reused |" in (demo / "report.md").read_text()
    assert main(["demo", "--quick", "--output-dir", str(demo), "--pretrain-epochs", "2", "--no-progress"]) == 2
    assert main(["demo", "--folds", "1", "--output-dir", str(demo)]) == 2
    assert main(["demo", "--quick", "--samples-3d", "60", "--output-dir", str(demo), "--no-progress"]) == 2
    assert main(["demo", "--quick", "--epochs", "3", "--output-dir", str(demo), "--no-progress"]) == 2


def test_paper_protocol_keeps_its_own_constants():
    from crossd.demo.run import DemoConfig

    paper = DemoConfig(protocol="paper").resolved()
    assert paper.epochs is None and paper.eval_lr is None  # the protocol's 15 epochs and lr 1e-3
    assert DemoConfig(protocol="paper", quick=True).resolved().epochs == 2  # reduced only by --quick/--epochs
    assert DemoConfig().resolved().eval_lr == 1e-2
    with pytest.raises(ValueError, match="protocol must be one of"):
        DemoConfig(protocol="linear").resolved()


def test_segmentation_second_task_reuses_the_run_and_reports_dice(demo):
    argv = ["demo", "--quick", "--volumes", "--baselines", "core", "--segmentation", "--output-dir", str(demo)]
    assert main([*argv, "--no-progress"]) == 0
    results = json.loads((demo / "segmentation" / "results.json").read_text())
    methods = ["crossd", "crossd+volumes", "acs", "i3d", "acs+volumes", "random"]
    assert [m["method"] for m in results["results"]] == methods
    report = (demo / "report.md").read_text()
    assert "## 4. Second task: grey/white-matter segmentation" in report
    crossd_dice = results["results"][0]["dice_mean_mean"]
    assert f"| crossd | {100 * crossd_dice:.2f}" in report


def test_the_default_demo_runs_the_2d_only_pair():
    from crossd.demo.run import DemoConfig

    assert [r.name for r in DemoConfig().runs()] == ["crossd", "regular"]
    assert [r.folder for r in DemoConfig(volumes=True).runs()][2:] == [
        "pretrain-crossd-volumes",
        "pretrain-regular-volumes",
    ]


def test_the_default_baselines_add_slice_aggregation_and_2_5d_and_the_report_says_which_ran(demo):
    report = (demo / "report.md").read_text()
    assert "Baselines in this run (`--baselines core`): `acs`, `i3d`, `acs+volumes`, `random`." in report
    assert "The default run adds slice aggregation" in report
    assert main(["demo", "--quick", "--volumes", "--output-dir", str(demo), "--no-progress"]) == 0
    added = ["slices", "2.5d"]
    results = json.loads((demo / "evaluate" / "results.json").read_text())
    methods = ["crossd", "crossd+volumes", "acs", "i3d", "acs+volumes", *added, "random"]
    assert [m["method"] for m in results["results"]] == methods
    assert all(len(m["folds"]) == 2 for m in results["results"])
    report = (demo / "report.md").read_text()
    assert "Baselines in this run: `acs`, `i3d`, `acs+volumes`, " in report
    assert all(f"`{label}`" in report for label in added)
    assert "--volumes --pretrain-epochs" in report  # the default baselines need no flag
    slices = next(m for m in results["results"] if m["method"] == "slices")
    assert slices["loading"]["pool"] == "mean" and slices["loading"]["source_conv"] == "regular"
    row = next(line for line in report.splitlines() if line.startswith("| slices | the 2D network on every axial"))
    assert mean_std(slices["accuracy_mean"], slices["accuracy_std"]) in row
    summary = json.loads((demo / "demo.json").read_text())
    assert set(summary["margins"]["crossd"]) == {"i3d", "acs", "acs+volumes", *added}


def test_baselines_are_a_known_set_and_segmentation_keeps_the_3d_encoders():
    from crossd.demo.run import DemoConfig, encoder_methods
    from crossd.errors import SettingsError

    assert [label for _, _, label in DemoConfig(baselines="core").transfers()] == [
        "crossd",
        "crossd+volumes",
        "acs",
        "i3d",
        "acs+volumes",
    ]
    assert [label for _, _, label in DemoConfig().transfers()][-2:] == ["slices", "2.5d"]
    with pytest.raises(SettingsError, match="baselines must be one of"):
        DemoConfig(baselines="some").resolved()
    methods = [("crossd", "c"), ("slices", "r", "slices"), ("acs", "r"), ("random", None, "random")]
    assert encoder_methods(methods) == [("crossd", "c"), ("acs", "r"), ("random", None, "random")]
