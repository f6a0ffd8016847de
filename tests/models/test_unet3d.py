"""UNet3D: a transferred 3D encoder with a 3D decoder and skip connections, output at input resolution."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from crossd import to_3d, to_crossd
from crossd.models import UNet3D
from crossd.models.small_cnn import SmallCNN

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resnet_encoder_segments_at_input_resolution():
    net = UNet3D(to_3d(resnet18(), init="i3d"), out_channels=3)
    assert [block[0].in_channels for block in net.decoder] == [512 + 256, 256 + 128, 128 + 64, 64 + 64, 32]
    out = net(torch.randn(2, 3, 32, 32, 32))
    assert out.shape == (2, 3, 32, 32, 32)
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 20, 24, 28)).shape == (1, 3, 20, 24, 28)  # sizes not divisible by 32


def test_bottleneck_widths_are_read_from_the_encoder():
    net = UNet3D(to_3d(resnet50(), init="random"), out_channels=2)
    assert [block[0].in_channels for block in net.decoder[:-1]] == [2048 + 1024, 256 + 512, 128 + 256, 64 + 64]


def test_crossd_encoder_keeps_its_kernels_and_every_part_learns():
    crossd = to_crossd(resnet18(), init="center")
    net = UNet3D(to_3d(crossd, init="crossd"), out_channels=2)
    assert torch.equal(net.encoder.layer3[1].conv2.weight, crossd.layer3[1].conv2.weight)
    loss = net(torch.randn(2, 3, 16, 16, 16)).square().mean()
    loss.backward()
    encoder = list(net.encoder_parameters())
    assert len(encoder) == len(list(net.encoder.parameters())) - 2  # everything but the unused fc
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder + list(net.decoder_parameters()))


def test_features_encoder_and_bad_encoders():
    net = UNet3D(to_3d(SmallCNN(widths=(4, 8, 16)), init="i3d"), out_channels=2, decoder_channels=(16, 8, 4))
    assert net(torch.randn(1, 3, 12, 12, 12)).shape == (1, 2, 12, 12, 12)
    with pytest.raises(ValueError, match="convert it with crossd.to_3d"):
        UNet3D(resnet18(), out_channels=2)
    with pytest.raises(ValueError, match="has no stages crossd can find"):
        UNet3D(nn.Sequential(nn.Conv3d(1, 2, 3)), out_channels=2)
