"""The preprocessing record of checkpoints, normalisation names and intensity windows."""

import numpy as np
import pytest
import torch

from crossd.data.preprocessing import (
    Preprocessing,
    PreprocessingWarning,
    normalization_name,
    normalize_volumes,
    parse_window,
    scale_to_unit,
    volume_normalization,
)
from crossd.errors import SettingsError


def test_record_round_trips_through_checkpoint_dicts_and_safetensors_metadata():
    record = Preprocessing("imagenet", (-1000.0, 400.0), 224, 3)
    assert Preprocessing.from_metadata({"preprocessing": record.to_dict()}) == record  # checkpoint.pt
    assert Preprocessing.from_metadata({"crossd.arch": "resnet18", **record.metadata()}) == record  # .safetensors
    assert Preprocessing.from_metadata({"crossd.arch": "resnet18"}) is None  # written before the record existed


def test_none_is_the_deprecated_name_of_minmax_and_unknown_names_are_refused():
    with pytest.warns(PreprocessingWarning, match="normalize none is deprecated and means minmax"):
        assert normalization_name("none") == "minmax"
    with pytest.raises(SettingsError, match=r"normalize must be one of \('imagenet', .*\), got 'z'"):
        normalization_name("z")


def test_window_clips_and_scales_to_unit():
    hounsfield = np.array([-3000, -1000, -300, 400, 3000], dtype=np.int16)
    np.testing.assert_allclose(scale_to_unit(hounsfield, *parse_window("-1000,400")), [0, 0, 0.5, 1, 1])


@pytest.mark.parametrize("text", ["-1000", "400,-1000", "a,b", "0,inf"])
def test_bad_window_is_one_line_naming_the_setting(text):
    with pytest.raises(SettingsError) as caught:
        parse_window(text)
    assert caught.value.field == "window" and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "name, mean, std", [("imagenet", 0.449, 0.226), ("radimagenet", 0.3162, 0.3213), ("minmax", 0, 1)]
)
def test_volumes_take_the_mean_of_the_channel_constants_in_every_channel(name, mean, std):
    assert volume_normalization(name) == pytest.approx((mean, std), abs=1e-12)
    volumes = torch.rand(2, 3, 4, 5, 6)
    out = normalize_volumes(volumes, name)
    assert out.shape == volumes.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), (volumes.double() - mean) / std)
