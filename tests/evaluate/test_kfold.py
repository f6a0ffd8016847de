"""The k-fold engine: per-fold numbers pinned in float64, independence from the process count (1 process,
torchrun, shards), kill and resume, fewer methods, the directory lock, non-finite losses."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from crossd.cli import main
from crossd.evaluate import EvaluateConfig, evaluate
from crossd.evaluate.kfold import owner, parse_shard
from crossd.evaluate.transforms import SampleDataset
from crossd.io import save_safetensors
from crossd.models import ModelSpec, create_model

# Per-fold (accuracy, last-epoch training loss) of `_pinned_runs` below, trained in float64 (models and samples:
# the engine follows torch's default dtype). Produced by this test's configurations on an Intel x86 CPU, one thread.
#
# Why float64: this training is chaotic. In float32 a rounding change of ~1e-7 (the fused rotation head or Adam
# against the four-module/foreach ones, or another CPU's BLAS kernels) moves a last-epoch loss by ~3e-3 after 3
# epochs (1.2018 -> 1.2054 on an AMD EPYC), and sometimes flips a fold's accuracy, so float32 numbers pinned on
# one CPU fail on another. In float64 the same amplification leaves ~1e-12: the fused and unfused paths agree to
# 4e-13 relative here. Tolerance: losses to rel 1e-8, 1e4 times that cross-path spread, while any real change of
# the engine moves them by far more (lr 0.01 -> 0.0101 alone moves every loss by 0.5-6 %; another seed, fold
# split, schedule or init moves them by tens of percent). Accuracies (k/8) must be equal.
#
# History: until this test was re-pinned in float64, it pinned the float32 numbers of the code before the k-fold
# engine (main at 006526c) to 1e-6 on the machine they were produced on (see the git history of this file).
PINNED = {
    "3d": {
        "crossd": ([0.25, 0.625, 0.5], [0.6315555053824607, 0.34064037278624015, 0.9904458129855485]),
        "i3d": ([0.5, 0.5, 0.875], [0.45879257571637594, 0.30311281654846783, 0.7628945575269138]),
    },
    "3d_random_alone": {"random": ([0.5, 0.5, 0.5], [0.5981093894192632, 0.40693092870092684, 0.8848198575489422])},
    "2d": {
        "crossd": ([0.625, 0.375, 0.375], [0.5339454207205162, 0.9474368601031086, 0.8189594794040763]),
        "regular2d": ([0.5, 0.5, 0.25], [0.6543875505019398, 0.7358770797381838, 0.8486257380749076]),
    },
}


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory):
    """small_cnn checkpoints (Cross-D, regular) in float32, created after torch.manual_seed(0) as when the numbers
    were pinned."""
    root = tmp_path_factory.mktemp("small")
    torch.manual_seed(0)
    for conv in ("crossd", "regular"):
        spec = ModelSpec("small_cnn", conv, "rotate", 10)
        model = create_model(spec.arch, spec.num_classes, conv)
        save_safetensors(model.state_dict(), root / f"{conv}.safetensors", spec.metadata())
    return root


@pytest.fixture
def float64():
    """torch's default dtype float64 for one test: models, heads and normalised samples follow it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_per_fold_numbers_in_float64_equal_the_pinned_ones(data_dir, small_checkpoints, tmp_path, float64):
    ckpt = {c: small_checkpoints / f"{c}.safetensors" for c in ("crossd", "regular")}
    runs = {
        "3d": ("vol.npz", [("crossd", ckpt["crossd"]), ("i3d", ckpt["regular"])], {}),
        "3d_random_alone": ("vol.npz", [("random", None)], {}),
        "2d": (
            "img.npz",
            [("crossd", ckpt["crossd"]), ("regular2d", ckpt["regular"])],
            {"image_size": 16, "normalize": "imagenet"},
        ),
    }
    for name, (data, methods, extra) in runs.items():
        cfg = EvaluateConfig(
            data_dir / data, methods, tmp_path / name, protocol="finetune", folds=3, repeats=1, epochs=3,
            batch_size=4, lr=0.01, arch="small_cnn", progress=False, seed=5, **extra,
        )  # fmt: skip
        for method in evaluate(cfg).methods:
            accuracies, losses = PINNED[name][method.method]
            assert [f.accuracy for f in method.folds] == accuracies, (name, method.method)
            last = [f.history["train_loss"][-1] for f in method.folds]
            assert last == pytest.approx(losses, rel=1e-8), (name, method.method)


def _flags(data_dir, ckpt_dir, out, *extra):
    return [
        "--data", str(data_dir / "vol.npz"), "--init", "random", f"i3d={ckpt_dir / 'regular.safetensors'}",
        "--arch", "small_cnn", "--folds", "2", "--repeats", "1", "--epochs", "1", "-b", "4", "--protocol", "finetune",
        "--seed", "1", "--no-progress", "--output-dir", str(out), *extra,
    ]  # fmt: skip


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def _per_fold(out) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert results["complete"]
    return {m["method"]: [(f["accuracy"], f["history"]["train_loss"]) for f in m["folds"]] for m in results["results"]}


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_one_process_torchrun_and_shards_give_the_same_folds(data_dir, small_checkpoints, tmp_path, capsys):
    single, ranks, shards = tmp_path / "single", tmp_path / "torchrun", tmp_path / "shards"
    assert main(["evaluate", *_flags(data_dir, small_checkpoints, single)]) == 0
    command = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "crossd", "evaluate"]
    done = subprocess.run(
        [*command, *_flags(data_dir, small_checkpoints, ranks)], capture_output=True, text=True, timeout=300, env=_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("table:") == 1  # rank 0 reports
    for k in (1, 2):
        assert main(["evaluate", *_flags(data_dir, small_checkpoints, shards, "--shard", f"{k}/2")]) == 0
        assert f"shard {k}/2: ran 2 job(s)" in capsys.readouterr().out
        if k == 1:  # one fold of each method, not one method's two folds
            assert sorted(p.parent.name for p in (shards / "jobs").rglob("*.json")) == ["i3d", "random"]
    assert not (shards / "results.json").exists()  # shards merge nothing
    merged = shards / "jobs"
    before = {p: p.read_bytes() for p in merged.rglob("*.json")}
    assert main(["evaluate", *_flags(data_dir, small_checkpoints, shards)]) == 0  # merges, trains nothing
    assert {p: p.read_bytes() for p in merged.rglob("*.json")} == before
    reference = _per_fold(single)
    assert len(reference["random"]) == len(reference["i3d"]) == 2
    assert _per_fold(ranks) == reference
    assert _per_fold(shards) == reference


def test_sigkill_mid_run_then_resume_keeps_every_finished_fold(data_dir, small_checkpoints, tmp_path):
    out = tmp_path / "run"
    flags = _flags(data_dir, small_checkpoints, out)
    flags[flags.index("--folds") + 1], flags[flags.index("--epochs") + 1] = "3", "3"
    process = subprocess.Popen([sys.executable, "-m", "crossd.evaluate", *flags], env=_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # results.json follows each finished job file; waiting for it (not for the job file) keeps the kill out of the
    # window between the two writes, where no results.json exists yet and the rerun below would not need --resume
    while not (out / "results.json").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p: p.read_bytes() for p in out.glob("jobs/*/*.json")}
    assert 1 <= len(finished) < 6, "the kill came too late to test anything"
    assert (out / ".lock").exists()  # left by the killed run; its pid is dead, so the lock is taken over
    assert main(["evaluate", *flags]) == 2  # a results.json exists: needs --resume
    assert main(["evaluate", *flags, "--resume"]) == 0
    assert all(path.read_bytes() == content for path, content in finished.items())
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and all(len(m["folds"]) == 3 for m in results["results"])
    for path in finished:
        record = json.loads(path.read_text())
        method = next(m for m in results["results"] if m["method"] == record["method"])
        assert record["record"]["accuracy"] in [f["accuracy"] for f in method["folds"]]
    assert not (out / ".lock").exists()


def test_sigterm_mid_run_is_one_line_with_how_to_resume_and_the_resume_keeps_every_finished_fold(
    data_dir, small_checkpoints, tmp_path
):
    out = tmp_path / "run"
    flags = _flags(data_dir, small_checkpoints, out)
    flags[flags.index("--folds") + 1], flags[flags.index("--epochs") + 1] = "3", "3"
    stale = out / "jobs" / "random" / ".crossd-tmp-r0f9.json"  # what a kill during an atomic write leaves
    stale.parent.mkdir(parents=True)
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    process = subprocess.Popen(
        [sys.executable, "-m", "crossd.evaluate", *flags], env=_env(), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("jobs/*/r*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=60)[1]
    finished = {p: p.read_bytes() for p in out.glob("jobs/*/r*.json")}
    assert 1 <= len(finished) < 6, "the signal came too late to test anything"
    assert process.returncode == 143 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert "interrupted (SIGTERM)" in line and f"jobs saved in {out / 'jobs'}; resume with the same settings" in line
    assert not stale.exists()  # removed at the start of the run
    assert not (out / ".lock").exists()  # released on the way out
    assert main(["evaluate", *flags, "--resume"]) == 0
    assert all(path.read_bytes() == content for path, content in finished.items())
    assert not list(out.rglob(".crossd-tmp-*"))


def test_rerun_with_fewer_methods_keeps_and_names_the_others(data_dir, small_checkpoints, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["evaluate", *_flags(data_dir, small_checkpoints, out)]) == 0
    flags = _flags(data_dir, small_checkpoints, out, "--resume")
    flags.remove(f"i3d={small_checkpoints / 'regular.safetensors'}")
    capsys.readouterr()
    assert main(["evaluate", *flags]) == 0
    assert "kept on disk, not reported (not asked for): i3d (2 jobs)" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [m["method"] for m in results["results"]] == ["random"] and results["not_reported"] == {"i3d": 2}
    assert sorted(p.name for p in (out / "jobs" / "i3d").iterdir()) == ["r0f0.json", "r0f1.json"]
    assert "not reported here (not asked for in this run): i3d (2 jobs)" in (out / "results.md").read_text()


def test_a_second_run_on_the_same_directory_refuses_and_a_stale_lock_is_taken_over(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    host = socket.gethostname()
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": host, "since": "now"}))
    argv = ["evaluate", "--data", str(data_dir / "vol.npz"), "--init", "random", "--arch", "small_cnn", "--folds", "2"]
    argv += ["--epochs", "1", "--no-progress", "--output-dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"is in use by pid {os.getpid()} on {host}" in err and len(err.strip().splitlines()) == 1
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": host, "since": "then"}))
    assert main(argv) == 0 and not (out / ".lock").exists()


def test_a_nan_loss_stops_with_one_line_and_no_table(data_dir, tmp_path, capsys, monkeypatch):
    """NaN data is refused when read (crossd.data.checks); a NaN born later (here: a sample turned NaN after the
    checks, as a bad transform would) must stop training, not produce a table."""
    original = SampleDataset.__getitem__

    def poisoned(self, item):
        x, y = original(self, item)
        return (x * float("nan") if item == 1 else x), y

    monkeypatch.setattr(SampleDataset, "__getitem__", poisoned)
    argv = ["evaluate", "--data", str(data_dir / "vol.npz"), "--init", "random", "--arch", "small_cnn"]
    argv += ["--folds", "2", "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 1  # the exit code of a non-finite loss (crossd.cli)
    err = capsys.readouterr().err
    assert "random r0f0 epoch 0 step 1: loss is nan" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists() and not list(tmp_path.glob("out/jobs/*/*"))


def test_folds_when_a_class_has_fewer_samples_than_folds(tmp_path):
    labels = np.array([0] * 10 + [1] * 2)
    images = (np.random.default_rng(0).random((12, 8, 8, 8)) * 100).astype(np.uint8)
    np.savez(tmp_path / "x.npz", images=images, labels=labels)
    cfg = EvaluateConfig(tmp_path / "x.npz", [("random", None)], tmp_path / "out", folds=3, repeats=1, epochs=1)
    cfg.arch, cfg.progress = "small_cnn", False
    with pytest.warns(UserWarning, match="class '1' has 2 sample\\(s\\), fewer than the 3 folds: the folds are not"):
        results = evaluate(cfg)
    assert len(results.methods[0].folds) == 3


@pytest.mark.parametrize(
    "methods,splits,processes", [(2, 5, 2), (2, 4, 2), (1, 5, 2), (3, 5, 2), (7, 25, 4), (2, 3, 8)]
)
def test_the_deal_spreads_every_method_evenly_over_the_processes(methods, splits, processes):
    jobs = range(methods * splits)  # split-major: job i is method i % methods on split i // methods
    owners = [owner(i, methods, splits, processes) for i in jobs]
    assert set(owners) <= set(range(processes))
    totals = [owners.count(p) for p in range(processes)]
    assert max(totals) - min(totals) <= 1
    for m in range(methods):
        mine = [owners[i] for i in jobs if i % methods == m]
        per_process = [mine.count(p) for p in range(processes)]
        assert max(per_process) - min(per_process) <= 1, (m, per_process)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1-2", "a/b"])
def test_bad_shard_is_one_line(text):
    with pytest.raises(ValueError, match="^shard .*: expected K/N"):
        parse_shard(text)


def test_a_label_reused_for_another_checkpoint_is_refused(data_dir, small_checkpoints, tmp_path):
    def run(methods):
        cfg = EvaluateConfig(data_dir / "vol.npz", methods, tmp_path, folds=2, repeats=1, epochs=1, resume=True)
        cfg.arch, cfg.progress = "small_cnn", False
        return evaluate(cfg)

    run([("i3d", small_checkpoints / "regular.safetensors")])
    with pytest.raises(ValueError, match="holds method 'i3d' with init 'i3d' and checkpoint .*regular.safetensors"):
        run([("i3d", small_checkpoints / "crossd.safetensors")])


class _Clock:
    """A fake ``time()`` that moves only when the test says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_in_a_log_file_is_at_most_a_line_a_minute(monkeypatch, capsys):
    """stderr not a terminal: no line before a minute has passed since the last, not even from tqdm's monitor
    thread (which redraws bars that have not printed for ``maxinterval`` s; it added a line 10-20 s after each
    minute's line before the interval was pinned). Driven by a fake clock and a monitor that wakes every 10 ms."""
    import tqdm.std
    from tqdm._monitor import TMonitor

    from crossd.evaluate.kfold import LOG_INTERVAL_S, progress_bar

    clock = _Clock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    monkeypatch.setattr(TMonitor, "_test", {"time": clock})
    probe = progress_bar(1, enabled=False)
    cls = type(probe)
    if cls.monitor is not None:  # a monitor on the real clock (from an earlier bar) would see the fake one as stale
        cls.monitor.exit()
    monkeypatch.setattr(cls, "monitor", None)
    monkeypatch.setattr(cls, "monitor_interval", 0)  # the bar must not start its own; ours runs on the fake clock
    monitor = TMonitor(cls, 0.01)
    try:
        bar = progress_bar(200, enabled=True)
        for _ in range(int(LOG_INTERVAL_S) + 10):  # one epoch a second for 70 s: a line at 60 s
            clock.now += 1.0
            bar.update(1)
        clock.now += 25.0  # 35 s after that line, no epoch finished: the monitor has had its chance
        time.sleep(0.3)
        lines = capsys.readouterr().err.count("evaluate:")
        bar.close()
    finally:
        monitor.exit()
    assert lines == 2, lines  # the bar's start and the 60 s line
