"""The settings both evaluation tasks share: validation, the record, and which settings a resumed run must keep."""

import pytest

from crossd.errors import SettingsError
from crossd.evaluate import EvaluateConfig
from crossd.evaluate.segmentation_config import SegmentationConfig
from crossd.evaluate.task_config import TaskConfig

NUMBER_SETTINGS = {
    "data", "protocol", "folds", "repeats", "epochs", "batch_size", "lr", "normalize", "window", "seed", "size",
    "slice_axis", "align", "arch", "drop_bn_stats",
}  # fmt: skip


def test_both_tasks_share_the_settings_and_resume_on_those_that_change_the_numbers():
    classification = EvaluateConfig("d.npz", [("random", None)], "out")
    segmentation = SegmentationConfig("mni152", [("random", None)], "out")
    assert isinstance(classification, TaskConfig) and isinstance(segmentation, TaskConfig)
    assert set(classification.resume_keys()) == NUMBER_SETTINGS | {
        "split", "spatial_dims", "num_classes", "image_size", "recalibrate_bn", "slice_pool", "protocol_constants",
    }  # fmt: skip
    assert set(segmentation.resume_keys()) == NUMBER_SETTINGS | {"val_fraction", "decoder_channels"}
    record = segmentation.record()
    assert record["methods"] == [["random", None]] and record["output_dir"] == "out" and record["folds"] == 5
    assert classification.record()["folds"] == 5 and classification.resolved("epochs") == 100  # bn's defaults
    assert segmentation.resolved("epochs") == 20


@pytest.mark.parametrize("config", [EvaluateConfig, SegmentationConfig])
@pytest.mark.parametrize(
    "settings, message",
    [
        ({"folds": 1}, "folds must be at least 2, got 1"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"window": (5, 1)}, "window needs finite LOW < HIGH"),
        ({"protocol": "paperish"}, "protocol must be one of"),
        ({"methods": []}, "methods is empty"),
    ],
)
def test_both_tasks_refuse_bad_settings_in_one_line(config, settings, message):
    cfg = config(**{"data": "x", "methods": [("random", None)], "output_dir": "out", **settings})
    with pytest.raises(SettingsError, match=message) as caught:
        cfg.validate()
    assert "\n" not in str(caught.value)


def test_segmentation_keeps_its_protocol_alias_and_refuses_classification_only_inits():
    cfg = SegmentationConfig("mni152", [("random", None)], "out", protocol="frozen")
    cfg.validate()
    assert cfg.protocol == "linear"
    with pytest.raises(SettingsError, match="'regular2d' builds no 3D segmentation encoder"):
        SegmentationConfig("mni152", [("regular2d", None)], "out").validate()
