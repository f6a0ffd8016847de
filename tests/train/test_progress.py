"""Throughput reporting: the time spent waiting for data, and where a pretraining run reports it."""

import csv
import time

import pytest

from crossd.train import pretrain
from crossd.train.progress import DataWait


def _slow_batches(n: int, seconds: float):
    for i in range(n):
        time.sleep(seconds)
        yield i


def test_data_wait_counts_the_time_inside_next_only():
    batches = DataWait(list(range(3)))
    assert len(batches) == 3
    slow = DataWait(_slow_batches(3, 0.04))
    start = time.perf_counter()
    for _ in slow:
        time.sleep(0.02)  # the "model": not waiting for data
    total = time.perf_counter() - start
    assert 0.12 <= slow.seconds < total - 0.05
    assert slow.seconds / total == pytest.approx(2 / 3, abs=0.1)


def test_pretraining_reports_images_per_second_and_data_wait(tiny_config, capsys):
    cfg = tiny_config()
    pretrain(cfg)
    out = capsys.readouterr().out
    assert "img/s, data wait" in out.split("Epoch [1/1] train loss")[1]
    with open(f"{cfg.output_dir}/log.csv") as f:
        row = next(csv.DictReader(f))
    assert 0 <= float(row["data_wait"]) <= 1 and float(row["img/s"]) > 0
