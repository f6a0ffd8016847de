"""The published command line under ``torchrun`` on CPU (gloo): two processes, ``--sync-bn --rot``."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossd import to_3d
from crossd.data.images import load_image_splits
from crossd.models import ModelSpec, load_2d_model
from crossd.train import load_training_checkpoint


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_two_processes_writes_a_checkpoint_that_transfers_to_3d(tmp_path, image_folder):
    out = tmp_path / "out"
    command = [
        "torchrun", "--standalone", "--nproc_per_node=2", "-m", "crossd", "pretrain",
        "--data-path", str(image_folder), "--workers", "0", "--batch-size", "4", "--sync-bn", "--rot",
        "--epochs", "1", "--train-crop-size", "16", "--val-resize-size", "20", "--val-crop-size", "16",
        "--output-dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("sync-bn needs CUDA") == 1  # rank 0 warns once; BatchNorm stays per process
    assert done.stdout.count("Epoch [1/1] train loss") == 1  # only rank 0 reports
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "log.csv", "metrics.json", "model.safetensors"]
    assert load_training_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    model, spec = load_2d_model(out / "checkpoint.pt")
    assert spec == ModelSpec("resnet18", "crossd", "rotate", 3)
    # metrics.json covers every val sample once (gathered from both processes) and describes the saved model
    val = load_image_splits(image_folder, train_crop_size=16, val_resize_size=20, val_crop_size=16).val
    images, labels = map(torch.stack, zip(*[(x, torch.tensor(y)) for x, y in val], strict=True))
    with torch.no_grad():
        loss = F.cross_entropy(model.eval()(images), labels)
    assert json.loads((out / "metrics.json").read_text())["val"]["loss"] == pytest.approx(float(loss), rel=1e-5)
    model3d = to_3d(model, init="crossd").eval()
    with torch.no_grad():
        logits = model3d(torch.randn(1, 3, 16, 16, 16))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    assert Path(out / "log.csv").read_text().count("\n") == 2  # header + one epoch
