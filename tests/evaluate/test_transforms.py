"""Scaling, augmentation and normalisation of evaluation samples."""

import pickle

import numpy as np
import pytest
import torch

from crossd.evaluate import BnConstants, PaperConstants
from crossd.evaluate.transforms import SampleDataset, intensity_bounds, protocol_transforms, scale_intensities


def test_global_and_per_sample_min_max():
    images = np.array([[[0, 10]], [[20, 40]]], dtype=np.uint8)  # (N=2, C=1, 2)
    np.testing.assert_allclose(scale_intensities(images, "global"), [[[0, 0.25]], [[0.5, 1.0]]])
    np.testing.assert_allclose(scale_intensities(images, "per_sample"), [[[0, 1]], [[0, 1]]])
    with pytest.raises(ValueError, match="scaling must be"):
        intensity_bounds(images, "z-score")


def test_dataset_scales_lazily_repeats_grey_and_normalises_volumes_with_channel_means():
    images = (np.arange(2 * 8) * 15).astype(np.uint8).reshape(2, 1, 2, 2, 2)
    labels = np.array([0, 1])
    dataset = SampleDataset(images, labels, intensity_bounds(images, "global"), np.array([1]), lambda x: x, "imagenet")
    x, y = dataset[0]
    assert y == 1 and x.shape == (3, 2, 2, 2) and x.dtype == torch.float32
    expected = (images[1, 0].astype(np.float32) / 225 - 0.449) / 0.226  # ImageNet channel means for volumes
    for channel in range(3):
        np.testing.assert_allclose(x[channel].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_paper_augmentations_keep_shapes_and_give_plain_tensors():
    train, evaluation = protocol_transforms("paper", PaperConstants(), 3, None, seed=0)
    volume = torch.rand(1, 8, 8, 8)
    out = train(volume)
    assert type(out) is torch.Tensor and out.shape == volume.shape  # no MONAI MetaTensor into the model
    assert evaluation(volume) is volume
    train2d, eval2d = protocol_transforms("paper", PaperConstants(), 2, 12, seed=0)
    assert train2d(torch.rand(3, 20, 20)).shape == (3, 12, 12) and eval2d(torch.rand(3, 20, 30)).shape == (3, 12, 12)


def test_bn_protocol_flips_depth_of_volumes():
    flip, _ = protocol_transforms("bn", BnConstants(flip_probability=1.0), 3, None)
    volume = torch.arange(8.0).reshape(1, 2, 2, 2)
    assert torch.equal(flip(volume), volume.flip(1))


@pytest.mark.parametrize("protocol, dims", [("paper", 3), ("paper", 2), ("bn", 3), ("bn", 2)])
def test_transforms_pickle_for_data_loader_workers(protocol, dims):
    constants = PaperConstants() if protocol == "paper" else BnConstants()
    pickle.loads(pickle.dumps(protocol_transforms(protocol, constants, dims, 16)))


def test_a_window_replaces_min_max_scaling_and_clips_every_sample():
    images = np.array([[[-2000, -1000, -300]], [[400, 1000, 0]]], dtype=np.int16)  # (N=2, C=1, 3) Hounsfield units
    bounds = intensity_bounds(images, "per_sample", window=(-1000, 400))
    np.testing.assert_allclose(bounds[0], [-1000, -1000]) and np.testing.assert_allclose(bounds[1], [400, 400])
    np.testing.assert_allclose(scale_intensities(images, "global", (-1000, 400)), [[[0, 0, 0.5]], [[1, 1, 5 / 7]]])
    dataset = SampleDataset(images[:, :, None, None], np.array([0, 1]), bounds, np.array([0, 1]), lambda x: x, "minmax")
    assert dataset[0][0][:, 0, 0].tolist() == [[0.0, 0.0, 0.5]] * 3 and dataset[1][0].max() == 1.0
