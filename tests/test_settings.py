"""Settings that change the numbers, declared on config fields; the resume checks derive their lists from them."""

from dataclasses import dataclass, field

from crossd.evaluate import EvaluateConfig
from crossd.evaluate.classification import Classification
from crossd.evaluate.segmentation import Segmentation, SegmentationConfig
from crossd.settings import RUN_ONLY, changes_numbers, run_only


@dataclass
class _Config:
    lr: float = 0.1
    device: str = field(default="cpu", metadata=RUN_ONLY)
    added_later: int = 0


def test_unmarked_fields_change_the_numbers():
    assert run_only(_Config) == ("device",) and run_only(_Config()) == ("device",)
    assert changes_numbers(_Config) == ("lr", "added_later")  # a new field counts until it is marked


def test_evaluation_resume_keys_leave_out_only_the_run_only_fields():
    cls = Classification(EvaluateConfig("x.npz", [("random", None)], "out"))
    assert set(run_only(EvaluateConfig)) == {
        "methods", "output_dir", "device", "resume", "allow_changed", "progress", "num_workers",
    }  # fmt: skip
    assert set(cls.settings()) - set(cls.resume_keys()) == set(run_only(EvaluateConfig))
    assert "protocol_constants" in cls.resume_keys() and "lr" in cls.resume_keys()
    seg = Segmentation(SegmentationConfig("mni152", [("random", None)], "out"))
    assert set(seg.settings()) - set(seg.resume_keys()) == set(run_only(SegmentationConfig))
    assert {"decoder_channels", "val_fraction"} <= set(seg.resume_keys())


def test_pretraining_resume_and_the_demos_reuse_follow_the_same_marks():
    from dataclasses import asdict, replace

    from crossd.demo.run import _same_run
    from crossd.train.config import RESUME_FIXED, RESUME_FREE, PretrainConfig

    assert set(RESUME_FIXED) == set(changes_numbers(PretrainConfig)) - set(RESUME_FREE)
    assert {"workers", "device", "output_dir", "resume", "quiet"} <= set(run_only(PretrainConfig))
    cfg = PretrainConfig(data_path="a/x.npz", output_dir="a/run", epochs=2)
    moved = replace(cfg, data_path="b/x.npz", output_dir="b/run", workers=0, device="cpu", quiet=True)
    assert _same_run(asdict(cfg), moved)  # a moved demo folder, run on another machine, is the same run
    assert not _same_run(asdict(cfg), replace(cfg, lr=0.1)) and not _same_run(asdict(cfg), replace(cfg, epochs=3))
