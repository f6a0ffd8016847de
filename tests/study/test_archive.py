"""A seed interrupted mid-study is archived with its job files (crossd.study.archive) and continued elsewhere with
``--resume-from``, which reuses the archived folds instead of training them again, but only where the pretraining
reproduces the archived runs byte for byte; an archive made on another kind of machine is named before the
pretraining."""

from __future__ import annotations

import json
import shutil

from crossd.cli import main
from crossd.machine import machine
from crossd.study import load_study
from crossd.study.archive import archive


def test_an_interrupted_seed_is_archived_with_its_jobs_and_resumed_elsewhere_without_training_them(
    tmp_path, tiny_study, capsys
):
    config_path = tiny_study(protocols=["bn", "finetune"])
    config = load_study(config_path)
    assert config.planned_folders() == ["eval", "eval_finetune"]
    run = tmp_path / "run"
    assert main(["study", str(config_path), "--output-dir", str(run)]) == 0
    # as if the session ended during the fine-tuning folds: bn finished, one fine-tuning fold left
    seed = run / "seed0"
    (seed / "eval_finetune" / "results.json").unlink()
    (seed / "eval_finetune" / "jobs" / "crossd" / "r0f1.json").unlink()
    partial = tmp_path / "partial"
    archive(config, run, partial, [0])
    kept = partial / "seed0"
    assert (kept / "eval" / "results.json").is_file() and not (kept / "eval_finetune" / "results.json").exists()
    assert len(list(kept.glob("eval/jobs/*/*.json"))) == 3 * 2  # random, i3d, crossd x 2 folds: kept to resume
    assert len(list(kept.glob("eval_finetune/jobs/*/*.json"))) == 3 * 2 - 1
    # mark two archived folds, so that the resumed run shows whether it reused them or trained them again
    marked = [kept / "eval" / "jobs" / "i3d" / "r0f0.json", kept / "eval_finetune" / "jobs" / "random" / "r0f1.json"]
    for path in marked:
        job = json.loads(path.read_text())
        job["record"]["accuracy"] = 0.123
        path.write_text(json.dumps(job))
    elsewhere, final = tmp_path / "elsewhere", tmp_path / "final"
    shutil.copytree(partial, final)
    # as if the archive came from a machine with other CPU kernels: said before the pretraining, which here
    # reproduces the archived runs all the same, so their records are still reused
    wall = final / "seed0" / "rotate" / "wall_time.json"
    recorded = json.loads(wall.read_text())
    assert recorded["machine"] == machine() and 0 < recorded["cpu_seconds"]
    wall.write_text(json.dumps({**recorded, "machine": {**recorded["machine"], "cpu_capability": "AVX512_FP99"}}))
    args = ["study", str(config_path), "--output-dir", str(elsewhere), "--resume-from", str(final)]
    assert main([*args, "--archive", str(final)]) == 0
    here = machine()["cpu_capability"]
    out = capsys.readouterr().out
    assert f"seed 0: its archived records in {final} were made on another kind of machine" in out
    assert f"(cpu_capability: AVX512_FP99 -> {here})" in out and "its records are not restored" not in out
    for folder, method, fold in (("eval", "i3d", 0), ("eval_finetune", "random", 1)):
        results = json.loads((elsewhere / "seed0" / folder / "results.json").read_text())
        folds = next(m["folds"] for m in results["results"] if m["method"] == method)
        assert next(f["accuracy"] for f in folds if f["fold"] == fold) == 0.123  # reused, not trained again
    assert (elsewhere / "seed0" / "eval_finetune" / "jobs" / "crossd" / "r0f1.json").is_file()  # the missing fold
    # the seed has finished: the archive holds its results and no job files any more
    assert (final / "seed0" / "eval_finetune" / "results.json").is_file()
    assert not list(final.glob("seed0/eval*/jobs/*/*.json"))
    # an archive whose pretraining is not reproduced here (as on another CPU): said, and none of its folds reused
    unlike = tmp_path / "unlike"
    shutil.copytree(partial, unlike)
    metrics = unlike / "seed0" / "rotate" / "metrics.json"
    metrics.write_text(metrics.read_text().replace("accuracy", "accuracy ", 1))
    again = tmp_path / "again"
    assert main(["study", str(config_path), "--output-dir", str(again), "--resume-from", str(unlike)]) == 0
    assert f"seed 0: pretraining runs ['rotate'] differ from {unlike / 'seed0'}" in capsys.readouterr().out
    results = json.loads((again / "seed0" / "eval" / "results.json").read_text())
    folds = next(m["folds"] for m in results["results"] if m["method"] == "i3d")
    assert next(f["accuracy"] for f in folds if f["fold"] == 0) != 0.123  # trained again, not reused
