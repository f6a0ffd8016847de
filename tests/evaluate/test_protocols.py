"""Schedules: which parameters train, in which optimiser, at which learning rate, epoch by epoch."""

import pytest
import torch
from torch import nn

from crossd.evaluate import BnConstants, PaperConstants
from crossd.evaluate.methods import new_layers, replace_head
from crossd.evaluate.protocols import Schedule, batchnorm_parameters, recalibrate_batchnorm
from crossd.models import SliceModel, create_model

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")


def _model():
    model = create_model("resnet18", 10, conv="crossd")  # rotation heads have BatchNorms too
    return model, replace_head(model, 3)


def _ids(params):
    return {id(p) for p in params}


def test_paper_schedule_epochs_1_9_10():
    model, head = _model()
    bn = batchnorm_parameters(model)
    assert any("rotation_head" in n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d))
    head_ids, bn_ids = _ids(head.parameters()), _ids(bn)
    schedule = Schedule("paper", model, head, 15, 1e-3, PaperConstants())
    seen = {}
    for epoch in range(15):
        schedule.begin_epoch(epoch)
        trainable = _ids(p for p in model.parameters() if p.requires_grad)
        seen[epoch] = (type(schedule.optimizer), _ids(schedule.optimized_parameters()), trainable, schedule.lr)
        assert model.training and all(m.training for m in model.modules())  # BN statistics update throughout
        schedule.end_epoch()
    for epoch in (1, 9):
        optimizer, optimized, trainable, _ = seen[epoch]
        assert optimizer is torch.optim.AdamW and optimized == head_ids and trainable == head_ids
    assert seen[1][3] == pytest.approx(1e-3) and seen[9][3] == pytest.approx(1e-4)  # MultiStepLR at epoch 7
    optimizer, optimized, trainable, lr = seen[10]
    assert optimizer is torch.optim.Adam and optimized == head_ids | bn_ids and trainable == head_ids | bn_ids
    assert lr == pytest.approx(1e-4)
    assert [seen[e][3] for e in range(11, 15)] == pytest.approx([1e-4] * 4)  # constant after the switch
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)] + [
        m.weight for n, m in model.named_modules() if type(m).__name__ == "CrossDConv"
    ]
    assert not _ids(convs) & seen[14][1]


def test_paper_adamw_uses_torch_default_weight_decay():
    model, head = _model()
    schedule = Schedule("paper", model, head, 15, 1e-3, PaperConstants())
    assert schedule.optimizer.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("protocol", ["bn", "linear", "finetune"])
def test_bn_linear_finetune_parameters_and_milestones(protocol):
    model, head = _model()
    schedule = Schedule(protocol, model, head, 8, 1e-3, BnConstants())
    expected = {
        "bn": _ids(head.parameters()) | _ids(batchnorm_parameters(model)),
        "linear": _ids(head.parameters()),
        "finetune": _ids(model.parameters()),
    }[protocol]
    lrs = []
    for epoch in range(8):
        schedule.begin_epoch(epoch)
        assert _ids(schedule.optimized_parameters()) == expected
        assert _ids(p for p in model.parameters() if p.requires_grad) == expected
        bn_modes = {m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
        assert bn_modes == ({False} if protocol == "linear" else {True})
        lrs.append(schedule.lr)
        schedule.end_epoch()
    assert isinstance(schedule.optimizer, torch.optim.Adam)
    assert lrs == pytest.approx([1e-3] * 4 + [1e-4] * 2 + [1e-5] * 2)  # x0.1 at 50% and 75%


def test_recalibrate_batchnorm_sets_statistics_to_the_data_and_changes_nothing_else():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3), nn.BatchNorm3d(4, momentum=0.3)).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "batches" not in k}
    data = [(torch.randn(5, 1, 6, 6, 6) * 2 + 1, None) for _ in range(4)]
    recalibrate_batchnorm(model, data, torch.device("cpu"))
    bn = model[1]
    features = torch.cat([model[0](x) for x, _ in data])  # (20, 4, 4, 4, 4)
    # equal batch sizes: the average of batch means is the data mean (float32, tolerance 1e-5)
    torch.testing.assert_close(bn.running_mean, features.mean((0, 2, 3, 4)), rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.3 and not model.training
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_recalibrate_batchnorm_estimates_test_time_features_with_dropout_off_and_restores_modes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 4, 3), nn.Dropout(0.5), nn.BatchNorm3d(4)).train()
    data = [(torch.randn(5, 1, 6, 6, 6) + 1, None) for _ in range(4)]
    recalibrate_batchnorm(model, data, torch.device("cpu"))
    features = torch.cat([model[0](x) for x, _ in data])  # no dropout: the features the network sees at test time
    # dropout in training mode would scale kept activations by 2 and zero half: the variance would roughly double
    torch.testing.assert_close(model[2].running_mean, features.mean((0, 2, 3, 4)), rtol=1e-5, atol=1e-5)
    batch_vars = torch.stack([model[0](x).transpose(0, 1).flatten(1).var(1) for x, _ in data])  # unbiased, per batch
    torch.testing.assert_close(model[2].running_var, batch_vars.mean(0), rtol=1e-5, atol=1e-5)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("pool", ["mean", "attention"])
@pytest.mark.parametrize("protocol, epoch", [("bn", 0), ("linear", 0), ("finetune", 0), ("paper", 0), ("paper", 10)])
def test_slice_models_train_head_and_pool_beside_what_the_protocol_trains(protocol, epoch, pool):
    model = SliceModel(create_model("resnet18", 10), "dhw", pool)
    head = replace_head(model, 3)
    new = _ids(new_layers(model, head).parameters())
    assert new == _ids(head.parameters()) | _ids(model.pool.parameters())
    assert bool(list(model.pool.parameters())) == (pool == "attention")
    schedule = Schedule(
        protocol, model, new_layers(model, head), 15, 1e-3, PaperConstants() if protocol == "paper" else BnConstants()
    )
    for e in range(epoch + 1):
        schedule.begin_epoch(e)
        schedule.end_epoch()
    expected = {
        "bn": new | _ids(batchnorm_parameters(model)),
        "linear": new,
        "finetune": _ids(model.parameters()),
        "paper": new | (_ids(batchnorm_parameters(model)) if epoch == 10 else set()),
    }[protocol]
    assert _ids(schedule.optimized_parameters()) == expected
    assert _ids(p for p in model.parameters() if p.requires_grad) == expected
    assert batchnorm_parameters(model) and not _ids(batchnorm_parameters(model)) & new
