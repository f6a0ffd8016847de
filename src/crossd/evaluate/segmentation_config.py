"""Segmentation's evaluation run (``crossd evaluate --task segmentation``): its protocols and settings."""

from __future__ import annotations

from dataclasses import dataclass

from crossd.convert.inits import get_init, init_names
from crossd.errors import SettingsError
from crossd.evaluate.task_config import TaskConfig
from crossd.models.unet3d import DECODER_CHANNELS

SEGMENTATION_PROTOCOLS = ("linear", "bn", "finetune")
PROTOCOL_ALIASES = {"frozen": "linear"}


@dataclass
class SegmentationConfig(TaskConfig):
    """One segmentation evaluation run (the shared settings: :class:`~crossd.evaluate.task_config.TaskConfig`).

    Attributes:
        data: an ``image,label`` CSV of NIfTI pairs, or ``"mni152"`` (grey/white matter blocks of the template).
        protocol: ``linear``/``frozen`` (frozen encoder), ``bn`` or ``finetune``.
        val_fraction: the first ``val_fraction`` of each training fold validates.
        decoder_channels: the ``UNet3D`` decoder's channels, deepest first.
    """

    protocol: str = "finetune"
    folds: int = 5
    repeats: int = 1
    epochs: int = 20
    batch_size: int = 2
    lr: float = 1e-3
    val_fraction: float = 0.2
    decoder_channels: tuple[int, ...] = DECODER_CHANNELS

    def check_protocol(self) -> None:
        self.protocol = PROTOCOL_ALIASES.get(self.protocol, self.protocol)
        if self.protocol not in SEGMENTATION_PROTOCOLS:
            raise SettingsError(
                f"must be one of {SEGMENTATION_PROTOCOLS} or 'frozen' for segmentation, got {self.protocol!r}",
                field="protocol",
            )

    def check_init(self, init: str) -> None:
        kernel_init = get_init(init, "evaluate", field="methods")
        if not kernel_init.segmentation:
            why = ": slice aggregation gives one label per volume" if kernel_init.slice_axes else ""
            raise SettingsError(
                f"{init!r} builds no 3D segmentation encoder{why}; use one of "
                f"{', '.join(n for n in init_names('evaluate') if get_init(n).segmentation)}",
                field="methods",
            )
