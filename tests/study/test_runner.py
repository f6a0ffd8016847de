"""``crossd study`` end to end on a tiny study; shards wait for each other's runs with a time limit; an unfinished
pretraining run is resumed, not started again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crossd.cli import main
from crossd.errors import CrossdError
from crossd.study import load_study
from crossd.study.runner import pretraining_run, study_data, wait_for
from crossd.train import pretrain

BLEND = '\n[[arms]]\nname = "rotate_blend"\nsource = "rotate"\nblend = 0.5\ndescription = "blended"\n'


def test_a_tiny_study_pretrains_evaluates_and_writes_its_tables(tmp_path, tiny_study):
    out = tmp_path / "run"
    config = tiny_study(BLEND)
    assert main(["study", str(config), "--output-dir", str(out), "--archive", str(tmp_path / "archive")]) == 0
    seed = out / "seed0"
    for arm in ("regular", "rotate"):
        assert (seed / arm / "metrics.json").is_file()
        assert json.loads((seed / arm / "wall_time.json").read_text())["seconds"] > 0
    assert not (seed / "rotate_blend").exists()  # reuses rotate's run
    w = load_file(seed / "checkpoints" / "rotate.safetensors")["features.1.0.weight"]  # (Co, Ci, 3, 3, 3)
    blended = load_file(seed / "checkpoints" / "rotate_blend.safetensors")["features.1.0.weight"]
    torch.testing.assert_close(blended, 0.5 * w + 0.5 * w[:, :, 1:2].expand_as(w))
    results = json.loads((seed / "eval" / "results.json").read_text())
    assert [m["method"] for m in results["results"]] == ["random", "i3d", "crossd@rotate", "crossd@rotate_blend"]
    study = json.loads((out / "study.json").read_text())
    assert {r["method"] for r in study["rows"]} == {"random", "i3d", "rotate", "rotate_blend"}
    assert all(r["n"] == 2 for r in study["rows"]) and study["args"]["seeds"] == [0]
    text = (out / "study.md").read_text()
    assert "| `rotate`: Cross-D rotate |" in text and "vs I3D" in text and "| `regular` |" in text
    # the archive alone remakes the same tables
    archived = tmp_path / "archive"
    assert not list(archived.rglob("*.safetensors")) and (archived / "seed0" / "rotate" / "wall_time.json").is_file()
    assert main(["study", str(config), "--summarise-only", "--output-dir", str(archived)]) == 0
    assert json.loads((archived / "study.json").read_text())["by_protocol"] == study["by_protocol"]
    # a second run reuses everything: no pretraining, no evaluation job
    before = (seed / "rotate" / "metrics.json").stat().st_mtime_ns
    assert main(["study", str(config), "--output-dir", str(out)]) == 0
    assert (seed / "rotate" / "metrics.json").stat().st_mtime_ns == before


def test_a_shard_waits_for_the_other_shards_run_with_a_time_limit_and_says_for_what(tmp_path, tiny_study, capsys):
    with pytest.raises(CrossdError) as info:
        wait_for(tmp_path / "never.json", "the thing shard 2/2 makes", timeout=0.05, poll=0.01)
    assert info.value.field == "wait_seconds" and "the thing shard 2/2 makes" in str(info.value)
    assert "waiting for the thing shard 2/2 makes" in capsys.readouterr().out
    config = tiny_study()
    # shard 1/2 trains regular, then waits for rotate (shard 2/2's), which never comes
    code = main(
        ["study", str(config), "--output-dir", str(tmp_path / "run"), "--shard", "1/2", "--wait-seconds", "0.1"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--wait-seconds" in err and "'rotate', which shard 2/2 trains" in err
    assert (tmp_path / "run" / "seed0" / "regular" / "metrics.json").is_file()


def _log(run: Path) -> list[dict]:
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


def test_an_unfinished_pretraining_run_is_resumed_from_its_checkpoint(tmp_path, tiny_study):
    config = load_study(tiny_study())
    arm, data, out = config.arm("rotate"), study_data(config, tmp_path), tmp_path / "run"
    run = out / "seed0" / "rotate"
    pretrain(config.pretrain_config(arm, 0, str(data.pretrain), None, str(run)))  # 1 epoch, as if stopped there
    (run / "metrics.json").unlink()
    first = _log(run)
    config.pretrain["epochs"] = 2
    assert pretraining_run(config, arm, 0, data, out) == run
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert _log(run)[:1] == first and len(_log(run)) == 2  # epoch 0 kept, not trained again
    assert json.loads((run / "wall_time.json").read_text())["resumed"] is True
    assert json.loads((run / "metrics.json").read_text())


def test_a_study_runs_the_2_5d_and_slice_routes_and_the_2d_tasks(tmp_path, tiny_study):
    """Study 8's plan in small: ``2.5d``, ``slices`` and ``slices3`` (attention pool) from the regular network under
    every protocol, compared with each route named in ``[references]``; and the seed paper's Table 2: the regular
    network as trained, a random init and the Cross-D arm on the ``digits`` task (built from scikit-learn's shipped
    images), under ``bn`` and ``finetune`` only, with tables of their own."""
    config = tiny_study(
        inits=["i3d", "2.5d", "slices", "slices3"],
        protocols=["bn", "paper", "finetune"],
        slice_pool="attention",
        tasks_2d=["digits"],
        task_2d_samples=40,
    )
    text = config.read_text().replace('[references]\ni3d = "I3D"', '[references]\ni3d = "I3D"\nslices = "slices"')
    config.write_text(text)
    out = tmp_path / "run"
    assert main(["study", str(config), "--output-dir", str(out)]) == 0
    seed = out / "seed0"
    results = json.loads((seed / "eval_paper" / "results.json").read_text())
    assert [m["method"] for m in results["results"]] == ["i3d", "2.5d", "slices", "slices3", "crossd"]
    assert json.loads((seed / "eval" / "settings.json").read_text())["slice_pool"] == "attention"
    study = json.loads((out / "study.json").read_text())
    for protocol in ("bn", "paper", "finetune"):
        rows = {r["method"]: r for r in study["by_protocol"][protocol]}
        assert set(rows) == {"i3d", "2.5d", "slices", "slices3", "rotate"}
        assert rows["rotate"]["vs_slices"]["pairs"] == 2 and "vs_slices" not in rows["slices"]
    # the 2D task
    assert (out / "data" / "digits_32.npz").is_file()
    assert sorted(p.name for p in seed.glob("eval2d_*")) == ["eval2d_digits", "eval2d_digits_finetune"]
    results = json.loads((seed / "eval2d_digits" / "results.json").read_text())
    assert [m["method"] for m in results["results"]] == ["regular2d", "random", "crossd"]
    assert results["data"]["num_classes"] == 10
    tasks = study["tasks_2d"]
    assert set(tasks["digits"]) == {"bn", "finetune"}
    rows = {r["method"]: r for r in tasks["digits"]["bn"]["rows"]}
    assert set(rows) == {"regular2d", "random", "rotate"} and rows["rotate"]["vs_regular2d"]["pairs"] == 2
    text = (out / "study.md").read_text()
    assert (
        "### 2D task `digits`, protocol `finetune`" in text and "| `regular2d`: the regular 2D CNN as trained |" in text
    )
