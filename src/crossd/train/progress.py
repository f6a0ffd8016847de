"""What a run tells its user: periodic progress lines, the time spent waiting for data, and the per-epoch CSV (and
TensorBoard) log."""

from __future__ import annotations

import csv
import datetime
import io
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from crossd.io import save_text

LOG_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "img/s", "data_wait", "seconds",
)  # fmt: skip
"""``data_wait``: the share of the training epoch's time spent waiting for the next batch (0 to 1)."""

Batch = TypeVar("Batch")


class DataWait:
    """An iterable over ``loader`` that adds up the seconds spent waiting for each next batch in :attr:`seconds`.

    Only the wait inside ``next()`` counts (loading, decoding and augmenting not yet done by workers ahead of
    the model), not the model's step; ``seconds`` over the epoch's duration is the data-wait share.
    """

    def __init__(self, loader: Iterable[Batch]):
        self.loader, self.seconds = loader, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        batches = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield batch


class ProgressPrinter:
    """Every ``print_freq`` steps (and at the last), one line: running loss, acc@1/acc@5, lr, img/s and ETA."""

    def __init__(self, header: str, total_steps: int, print_freq: int, enabled: bool = True):
        self.header, self.total, self.freq, self.enabled = header, total_steps, print_freq, enabled
        self.start = time.perf_counter()

    def step(self, step: int, loss: float, acc1: float, acc5: float, lr: float, images: int) -> None:
        """``step`` is 1-based; metrics are running averages over the epoch; ``images`` seen so far by all processes."""
        if not self.enabled or (step % self.freq and step != self.total):
            return
        elapsed = time.perf_counter() - self.start
        eta = datetime.timedelta(seconds=round(elapsed / step * (self.total - step)))
        width = len(str(self.total))
        print(
            f"{self.header} [{step:>{width}}/{self.total}]  loss {loss:.4f}  acc1 {acc1:6.2f}  acc5 {acc5:6.2f}  "
            f"lr {lr:.2e}  img/s {images / max(elapsed, 1e-9):7.1f}  eta {eta}",
            flush=True,
        )


class EpochLog:
    """``log.csv`` in ``output_dir`` (rewritten atomically each epoch) and TensorBoard scalars if it is installed.

    On resume, rows of epochs after ``start_epoch`` (which will be run again) are dropped.
    """

    def __init__(self, output_dir: Path, start_epoch: int = 0):
        self.path = output_dir / "log.csv"
        self.rows: list[dict[str, str]] = []
        if start_epoch and self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [
                    r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= start_epoch
                ]
        self.tensorboard = _tensorboard_writer(output_dir / "tensorboard")

    def write(self, row: dict[str, float]) -> None:
        """Append an epoch's row: :data:`LOG_COLUMNS`, then any extra keys (e.g. hybrid training's ``volume_loss``)."""
        columns = [*LOG_COLUMNS, *(k for k in row if k not in LOG_COLUMNS)]
        self.rows.append({k: _format(row[k]) for k in columns})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        save_text(out.getvalue(), self.path)
        if self.tensorboard is not None:
            for key in columns[1:]:
                self.tensorboard.add_scalar(key, row[key], int(row["epoch"]))
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _format(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.8g}"


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(log_dir))
