"""evaluate() (classification): every init and protocol runs on tiny 2D and 3D data; results files, resume, frozen
convolutions."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from crossd.data.volumes import SampleSet
from crossd.evaluate import EvaluateConfig, evaluate
from crossd.evaluate import classification as classification_module
from crossd.evaluate.classification import Classification, make_splits
from crossd.evaluate.kfold import Job
from crossd.evaluate.methods import Method, build_network, replace_head
from crossd.evaluate.transforms import intensity_bounds
from crossd.nn import ACSConv3d


def _run(data_dir, out, data, methods, protocol="bn", **kw):
    cfg = EvaluateConfig(
        data_dir / data, methods, out, protocol=protocol, folds=2, repeats=1, epochs=1, progress=False, **kw
    )
    return evaluate(cfg)


def _check_results(results, out, names, epochs=1):
    assert [m.method for m in results.methods] == names
    stored = json.loads((out / "results.json").read_text())
    assert stored["complete"] and [m["method"] for m in stored["results"]] == names
    for method in stored["results"]:
        assert [(f["repeat"], f["fold"]) for f in method["folds"]] == [(0, 0), (0, 1)]
        accuracies = [f["accuracy"] for f in method["folds"]]
        assert method["accuracy_mean"] == pytest.approx(np.mean(accuracies))
        assert method["accuracy_std"] == pytest.approx(np.std(accuracies))
        for fold in method["folds"]:
            assert {"f1_macro", "balanced_accuracy", "best_epoch"} <= set(fold)
            assert all(len(v) == epochs for v in fold["history"].values())
    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    assert (out / "fold_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_every_3d_init_shares_folds_and_is_compared_with_crossd(data_dir, tmp_path):
    ckpt = {"crossd": data_dir / "crossd.safetensors", "regular": data_dir / "regular.safetensors"}
    methods = [
        ("crossd", ckpt["crossd"]),
        ("acs", ckpt["regular"]),
        ("i3d", ckpt["crossd"]),  # a Cross-D checkpoint: its angle-0 kernels
        ("center", ckpt["regular"]),
        ("random", None),
    ]
    results = _run(data_dir, tmp_path, "vol.npz", methods)
    _check_results(results, tmp_path, ["crossd", "acs", "i3d", "center", "random"])
    assert set(results.comparisons) == {"acs", "i3d", "center", "random"}
    assert all(c.pairs == 2 for c in results.comparisons.values())
    loading = {m.method: m.loading for m in results.methods}
    assert loading["i3d"]["source_conv"] == "crossd" and loading["acs"]["source_conv"] == "regular"
    assert "Wilcoxon" in (tmp_path / "results.md").read_text()


def test_without_a_plain_crossd_method_the_first_crossd_one_is_the_reference(data_dir, tmp_path):
    ckpt = data_dir / "crossd.safetensors"
    results = _run(data_dir, tmp_path, "vol.npz", [("i3d", ckpt), ("crossd", ckpt, "crossd+volumes"), ("random", None)])
    assert results.reference == "crossd+volumes" and set(results.comparisons) == {"i3d", "random"}
    table = (tmp_path / "results.md").read_text()
    assert "Wilcoxon vs crossd+volumes" in table and "| crossd+volumes |" in table and "(reference)" in table


@pytest.mark.parametrize("protocol", ["linear", "finetune", "paper"])
def test_3d_protocols_run(data_dir, tmp_path, protocol):
    methods = [("crossd", data_dir / "crossd.safetensors")]
    results = _run(data_dir, tmp_path, "vol.npz", methods, protocol=protocol, drop_bn_stats=protocol == "paper")
    _check_results(results, tmp_path, ["crossd"])
    assert results.args["protocol_constants"]["select"] == ("val_loss" if protocol == "paper" else "val_accuracy")
    if protocol == "paper":
        assert results.args["batch_size"] == 8 and results.args["protocol_constants"]["bn_epoch"] == 10
        assert "BatchNorms named `*bn*` reset" in (tmp_path / "results.md").read_text()


def test_linear_protocol_with_batchnorm_recalibration(data_dir, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        classification_module, "recalibrate_batchnorm", lambda model, loader, device: calls.append(loader)
    )
    methods = [("crossd", data_dir / "crossd.safetensors")]
    results = _run(data_dir, tmp_path, "vol.npz", methods, protocol="linear", recalibrate_bn=True)
    _check_results(results, tmp_path, ["crossd"])
    assert results.args["recalibrate_bn"] and len(calls) == 2  # once per fold
    folds = results.methods[0].folds
    assert all(len(loader.dataset) == fold.n_train for loader, fold in zip(calls, folds, strict=True))


def test_slice_inits_run_and_are_compared_with_crossd(data_dir, tmp_path):
    crossd, regular = data_dir / "crossd.safetensors", data_dir / "regular.safetensors"
    methods = [("crossd", crossd), ("slices", regular), ("slices3", crossd)]
    results = _run(data_dir, tmp_path, "vol.npz", methods, slice_pool="attention", batch_size=8)
    _check_results(results, tmp_path, ["crossd", "slices", "slices3"])
    assert {name: c.pairs for name, c in results.comparisons.items()} == {"slices": 2, "slices3": 2}
    assert results.args["slice_pool"] == "attention"
    table = (tmp_path / "results.md").read_text()
    assert "the 2D network on every axial slice, attention-pooled from `regular.safetensors`" in table
    assert (
        "3 orientations, attention-pooled, concatenated from `crossd.safetensors` (the Cross-D kernels' angle-0"
        in table
    )


@pytest.mark.parametrize("protocol", ["bn", "paper"])
def test_2d_inits_run(data_dir, tmp_path, protocol):
    methods = [("crossd", data_dir / "crossd.safetensors"), ("regular2d", data_dir / "regular.safetensors")]
    if protocol == "bn":
        methods.append(("random", None))
    results = _run(data_dir, tmp_path, "img.npz", methods, protocol=protocol, image_size=16, normalize="imagenet")
    _check_results(results, tmp_path, [m[0] for m in methods])
    assert results.data["spatial_dims"] == 2 and results.data["num_classes"] == 3


def test_bn_protocol_leaves_convolutions_bit_identical(data_dir, monkeypatch):
    labels = np.arange(24) % 2
    samples = SampleSet(np.random.default_rng(0).random((24, 1, 8, 8, 8)), labels, ["0", "1"])
    cfg = EvaluateConfig(
        data_dir / "vol.npz", [("acs", data_dir / "regular.safetensors")], "unused", folds=2, repeats=1, epochs=2,
        batch_size=4, lr=1e-2, normalize="radimagenet",
    )  # fmt: skip
    task = Classification(cfg)
    task.samples, task.bounds = samples, intensity_bounds(samples.images, "per_sample")
    model, _ = build_network(Method("acs", "acs", str(data_dir / "regular.safetensors")), 3)
    trained = {}

    def keep(net, n):  # the copy that run_job trains, and its new head as initialised
        trained["model"] = net
        head = replace_head(net, n)
        trained["head_init"] = head.weight.detach().clone()
        return head

    monkeypatch.setattr(classification_module, "replace_head", keep)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats_before = {n: b.clone() for n, b in model.named_buffers() if "running_mean" in n}
    split = make_splits(cfg, labels)[0]
    task.run_job(Job(0, Method("acs", "acs", None), split, 0), model, torch.device("cpu"), lambda: None)
    model = trained["model"]
    convs = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv3d, ACSConv3d))}
    assert convs and any(isinstance(m, ACSConv3d) for m in model.modules())
    for name, param in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner in convs:
            assert torch.equal(param, before[name]), name
    assert not torch.equal(model.fc.weight, trained["head_init"])  # the new head trained
    assert not torch.equal(model.bn1.weight, before["bn1.weight"])  # BatchNorm affine trained
    assert not torch.equal(model.bn1.running_mean, stats_before["bn1.running_mean"])  # statistics updated


def _record_jobs(monkeypatch) -> list[tuple[str, int]]:
    """From now on, every job that evaluate() trains is recorded as (method, fold)."""
    calls = []
    original = Classification.run_job

    def recording(self, job, template, device, on_epoch):
        calls.append((job.method.name, job.split.fold))
        return original(self, job, template, device, on_epoch)

    monkeypatch.setattr(Classification, "run_job", recording)
    return calls


def test_resume_skips_finished_folds_and_refuses_to_overwrite(data_dir, tmp_path, monkeypatch):
    methods = [("random", None)]
    first = _run(data_dir, tmp_path, "vol.npz", methods, seed=3)
    (tmp_path / "jobs" / "random" / "r0f1.json").unlink()  # as if killed during the second fold
    with pytest.raises(ValueError, match="already holds results; resume it or use another folder"):
        _run(data_dir, tmp_path, "vol.npz", methods, seed=3)
    with pytest.raises(ValueError, match="settings differ in seed"):
        _run(data_dir, tmp_path, "vol.npz", methods, seed=4, resume=True)
    calls = _record_jobs(monkeypatch)
    again = _run(data_dir, tmp_path, "vol.npz", methods, seed=3, resume=True)
    assert calls == [("random", 1)]
    assert again.methods[0].folds[0] == first.methods[0].folds[0]
    # the same seed gives the same folds and, with the same fold seed, the same numbers
    assert again.methods[0].folds[1].accuracy == first.methods[0].folds[1].accuracy


def test_resume_adopts_folds_of_a_results_json_without_job_files(data_dir, tmp_path, monkeypatch):
    first = _run(data_dir, tmp_path, "vol.npz", [("random", None)])
    for path in [*(tmp_path / "jobs").rglob("*.json"), tmp_path / "settings.json"]:
        path.unlink()  # a results.json from before job files existed
    stored = json.loads((tmp_path / "results.json").read_text())
    del stored["args"]["recalibrate_bn"]  # written before that setting existed: its default is assumed
    (tmp_path / "results.json").write_text(json.dumps(stored))
    calls = _record_jobs(monkeypatch)
    again = _run(data_dir, tmp_path, "vol.npz", [("random", None)], resume=True)
    assert calls == [] and again.methods[0].folds == first.methods[0].folds
    assert sorted(p.name for p in (tmp_path / "jobs" / "random").iterdir()) == ["r0f0.json", "r0f1.json"]


def test_resume_with_an_added_method_runs_only_that_method(data_dir, tmp_path, monkeypatch):
    first = _run(data_dir, tmp_path, "vol.npz", [("random", None)])
    calls = _record_jobs(monkeypatch)
    methods = [("random", None), ("i3d", data_dir / "regular.safetensors")]
    again = _run(data_dir, tmp_path, "vol.npz", methods, resume=True)
    assert calls == [("i3d", 0), ("i3d", 1)]
    assert again.methods[0].folds == first.methods[0].folds


def test_interrupted_run_keeps_finished_folds(data_dir, tmp_path, monkeypatch):
    original = Classification.run_job

    def stop_on_second_fold(self, job, template, device, on_epoch):
        if job.split.fold == 1:
            raise KeyboardInterrupt
        return original(self, job, template, device, on_epoch)

    monkeypatch.setattr(Classification, "run_job", stop_on_second_fold)
    with pytest.raises(KeyboardInterrupt):
        _run(data_dir, tmp_path, "vol.npz", [("random", None)])
    stored = json.loads((tmp_path / "results.json").read_text())
    assert not stored["complete"] and len(stored["results"][0]["folds"]) == 1
    assert "--resume" in (tmp_path / "results.md").read_text()
    assert not (tmp_path / ".lock").exists()


def test_random_init_depends_on_the_seed_only(data_dir, tmp_path):
    runs = []
    for i, state in enumerate((1, 2)):
        torch.manual_seed(state)  # whatever ran before must not change the random network
        runs.append(_run(data_dir, tmp_path / str(i), "vol.npz", [("random", None)]))
    folds = [[f.accuracy for f in r.methods[0].folds] for r in runs]
    losses = [[f.history["train_loss"] for f in r.methods[0].folds] for r in runs]
    assert folds[0] == folds[1] and losses[0] == losses[1]


def test_progress_in_a_log_file_is_not_a_line_per_job(data_dir, tmp_path, capsys):
    """stderr that is not a terminal (capsys; nohup, SLURM) gets the bar's first and last state, not every job."""
    methods = [("i3d", data_dir / "regular.safetensors"), ("random", None)]
    cfg = EvaluateConfig(data_dir / "vol.npz", methods, tmp_path, folds=2, repeats=2, epochs=1, progress=True)
    evaluate(cfg)
    err = capsys.readouterr().err
    assert "8/8" in err and err.count("evaluate:") <= 3, err


def test_official_split_tests_every_fold_on_the_files_test_split(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        labels = np.arange(n) % 2
        arrays[f"{split}_images"] = (rng.random((n, 8, 8, 8)) * 100 + labels[:, None, None, None] * 60).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None]
    np.savez(tmp_path / "m.npz", **arrays)
    results = _run(tmp_path, tmp_path / "out", "m.npz", [("random", None)], split="official", arch="small_cnn")
    folds = results.methods[0].folds
    assert [(f.n_train, f.n_val, f.n_test) for f in folds] == [(8, 8, 6), (8, 8, 6)]
    assert results.args["split"] == "official" and results.data["test_samples"] == 6
    assert "official test split (6 samples) in every job" in (tmp_path / "out" / "results.md").read_text()
