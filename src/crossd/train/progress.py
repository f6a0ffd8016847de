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

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "img/s", "data_wait", "seconds")
"""``data_wait``: the share of the training epoch's time spent waiting for the next batch (0 to 1). ``val_acc5``
follows as an extra column with more than 5 classes (:func:`crossd.metrics.reports_top5`)."""

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
    """Every ``print_freq`` steps (and at the last), one line: running loss, acc@1 (and acc@5 when given), lr, img/s
    and ETA."""

    def __init__(self, header: str, total_steps: int, print_freq: int, enabled: bool = True):
        self.header, self.total, self.freq, self.enabled = header, total_steps, print_freq, enabled
        self.start = time.perf_counter()

    def step(self, step: int, loss: float, acc1: float, acc5: float | None, lr: float, images: int) -> None:
        """``step`` is 1-based; metrics are running averages over the epoch (``acc5`` ``None``: not shown);
        ``images`` seen so far by all processes."""
        if not self.enabled or (step % self.freq and step != self.total):
            return
        elapsed = time.perf_counter() - self.start
        eta = datetime.timedelta(seconds=round(elapsed / step * (self.total - step)))
        width = len(str(self.total))
        print(
            f"{self.header} [{step:>{width}}/{self.total}]  loss {loss:.4f}  acc1 {acc1:6.2f}  "
            + ("" if acc5 is None else f"acc5 {acc5:6.2f}  ")
            + f"lr {lr:.2e}  img/s {images / max(elapsed, 1e-9):7.1f}  eta {eta}",
            flush=True,
        )


class EpochLog:
    """The per-epoch rows of a run: kept in memory (and by the caller in each checkpoint), written to ``log.csv``
    in ``output_dir`` (atomically) and to TensorBoard if it is installed.

    ``rows``: the rows of the epochs already done (a resumed run takes them from its checkpoint).
    """

    def __init__(self, output_dir: Path, rows: list[dict[str, str]] | None = None):
        self.path = output_dir / "log.csv"
        self.rows: list[dict[str, str]] = [dict(r) for r in rows or []]
        self.tensorboard = _tensorboard_writer(output_dir / "tensorboard")

    def add(self, row: dict[str, float]) -> None:
        """Append an epoch's row (:data:`LOG_COLUMNS`, then extra keys such as hybrid training's
        ``volume_loss``) and send it to TensorBoard; :meth:`write` puts the rows into ``log.csv``."""
        self.rows.append({k: _format(v) for k, v in row.items()})
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tensorboard.add_scalar(key, value, int(row["epoch"]))
            self.tensorboard.flush()

    def write(self) -> None:
        write_log_csv(self.rows, self.path)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def write_log_csv(rows: list[dict[str, str]], path: Path) -> None:
    """``rows`` as a CSV (columns: :data:`LOG_COLUMNS`, then any extra keys in order of appearance), atomically."""
    columns = list(LOG_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    save_text(out.getvalue(), path)


def _format(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.8g}"


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(log_dir))
