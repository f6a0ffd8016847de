"""``crossd.train.pretrain`` in one process: outputs, metrics, warm start and exact resume."""

import csv
import json
from pathlib import Path

import pytest
import torch
from image_data import write_medmnist_npz

from crossd.convert import planar_kernel
from crossd.errors import OutputError
from crossd.metrics import METRIC_NAMES
from crossd.models import ModelSpec, create_model, load_2d_model
from crossd.nn import CrossDConv
from crossd.train import load_training_checkpoint, pretrain
from crossd.train.model import build_model


def _log(output_dir) -> list[dict[str, str]]:
    with open(Path(output_dir) / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("conv", ["crossd", "regular"])
def test_one_epoch_writes_checkpoint_log_and_metrics(tiny_config, conv, capsys):
    cfg = tiny_config(conv=conv)
    results = pretrain(cfg)
    out = Path(cfg.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(results))
    for split in ("val", "test"):
        assert set(METRIC_NAMES) <= set(metrics[split])
        assert all(0.0 <= metrics[split][name] <= 1.0 for name in METRIC_NAMES)
    rows = _log(out)
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and float(rows[0]["lr"]) == pytest.approx(1e-3)
    assert float(rows[0]["val_acc1"]) == pytest.approx(100 * metrics["val"]["accuracy"])
    checkpoint = load_training_checkpoint(out / "checkpoint.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["classes"] == ["class0", "class1", "class2"]
    for name in ("checkpoint.pt", "model.safetensors"):
        model, spec = load_2d_model(out / name)
        assert spec == ModelSpec("resnet18", conv, "rotate", 3)
        assert any(isinstance(m, CrossDConv) for m in model.modules()) == (conv == "crossd")
    progress = capsys.readouterr().out
    assert "Epoch [1/1] [3/3]" in progress and "img/s" in progress and "eta" in progress
    # 3 classes: top-5 accuracy would be 100 % by construction, so it is reported nowhere
    assert "acc5" not in progress and "val_acc5" not in rows[0] and "acc5" not in metrics["val"]


def test_quiet_run_prints_nothing_but_writes_everything(tiny_config, capsys):
    cfg = tiny_config(quiet=True)
    pretrain(cfg)
    assert capsys.readouterr().out == ""
    assert len(_log(cfg.output_dir)) == 1 and (Path(cfg.output_dir) / "metrics.json").is_file()


def test_medmnist_npz_run(tmp_path, tiny_config):
    npz = write_medmnist_npz(tmp_path / "tiny.npz", classes=2, per_split=8, splits=("train", "val"))
    results = pretrain(tiny_config(data_path=str(npz), model="resnet18"))
    assert set(results) == {"epochs", "val"}  # no test split in the file
    assert results["val"]["accuracy"] == pytest.approx(results["val"]["acc1"] / 100)


@pytest.mark.parametrize("workers", [0, 1], ids=["main-process-data", "worker-data"])
def test_resume_continues_exactly(tmp_path, tiny_config, workers):
    common = {"epochs": 2, "workers": workers, "lr_scheduler": "steplr", "lr_step_size": 1, "lr_gamma": 0.5}
    straight = pretrain(tiny_config(output_dir=str(tmp_path / "straight"), **common))
    pretrain(tiny_config(output_dir=str(tmp_path / "resumed"), **{**common, "epochs": 1}))
    resumed = pretrain(
        tiny_config(output_dir=str(tmp_path / "resumed"), resume=str(tmp_path / "resumed/checkpoint.pt"), **common)
    )
    a, b = _log(tmp_path / "straight"), _log(tmp_path / "resumed")
    assert [r["epoch"] for r in b] == ["1", "2"]
    assert float(b[1]["lr"]) == pytest.approx(5e-4)
    for key in ("train_loss", "train_acc1", "val_loss"):
        assert float(a[1][key]) == pytest.approx(float(b[1][key]), rel=1e-6), key
    assert straight["val"] == pytest.approx(resumed["val"], rel=1e-6)
    wa = load_training_checkpoint(tmp_path / "straight/checkpoint.pt")["model"]
    wb = load_training_checkpoint(tmp_path / "resumed/checkpoint.pt")["model"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa)


def test_existing_run_is_not_overwritten(tiny_config):
    cfg = tiny_config(conv="regular")
    pretrain(cfg)
    before = (Path(cfg.output_dir) / "checkpoint.pt").read_bytes()
    with pytest.raises(OutputError, match=r"^output_dir .*: holds a run .*\); resume it or choose another folder$"):
        pretrain(cfg)
    assert (Path(cfg.output_dir) / "checkpoint.pt").read_bytes() == before


def test_resume_with_another_model_is_refused(tiny_config):
    cfg = tiny_config(conv="regular")
    pretrain(cfg)
    with pytest.raises(ValueError, match="is a regular resnet18 with 3 classes but this run builds a crossd"):
        pretrain(tiny_config(conv="crossd", resume=str(Path(cfg.output_dir) / "checkpoint.pt")))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="corrupt or unreadable checkpoint"):
        load_training_checkpoint(path)
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="not a crossd pretrain checkpoint"):
        load_training_checkpoint(path)


def test_warm_start_puts_regular_weights_in_the_centre_slice(tmp_path):
    source = create_model("resnet18", num_classes=10)
    torch.save(source.state_dict(), tmp_path / "imagenet.pth")
    model = build_model(ModelSpec("resnet18", "crossd", "rotate", 3), tmp_path / "imagenet.pth")
    assert isinstance(model.conv1, CrossDConv) and model.fc.out_features == 3
    assert torch.equal(planar_kernel(model.conv1), source.conv1.weight)
    assert torch.equal(model.layer1[0].bn1.weight, source.layer1[0].bn1.weight)


def test_sync_bn_and_amp_on_cpu_warn_and_train(tiny_config):
    with pytest.warns(UserWarning) as record:
        pretrain(tiny_config(conv="regular", sync_bn=True, amp=True, device="cpu"))
    messages = " ".join(str(w.message) for w in record)
    assert "sync_bn needs CUDA" in messages and "amp needs CUDA" in messages
