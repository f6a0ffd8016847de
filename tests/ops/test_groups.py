"""Plane groups: group sizes and counts, group means against a loop, expansion, granularity checks."""

import pytest
import torch

from crossd.errors import SettingsError
from crossd.ops.groups import check_granularity, expand_groups, group_count, group_mean, group_size, parse_granularity


@pytest.mark.parametrize(
    "batch, granularity, size, count",
    [
        (16, "sample", 1, 16),
        (16, "batch", 16, 1),
        (16, 4, 4, 4),
        (10, 4, 3, 4),
        (9, 4, 3, 3),
        (5, 8, 1, 5),
        (7, 1, 7, 1),
    ],
)
def test_group_size_and_count(batch, granularity, size, count):
    assert group_size(batch, granularity) == size
    assert group_count(batch, size) == count


@pytest.mark.parametrize("batch, size", [(10, 3), (9, 3), (4, 1), (5, 5)])
def test_group_mean_and_expand_against_a_loop(batch, size):
    values = torch.randn(batch, 4, dtype=torch.float64)
    starts = range(0, batch, size)
    expected = torch.stack([values[i : i + size].mean(0) for i in starts])
    means = group_mean(values, size)
    torch.testing.assert_close(means, expected, rtol=0, atol=1e-15)
    expanded = expand_groups(means, batch)
    assert torch.equal(expanded, torch.cat([means[j].expand(len(range(i, min(i + size, batch))), 4)
                                            for j, i in enumerate(starts)]))  # fmt: skip


def test_parse_and_check_granularity():
    assert parse_granularity("4") == 4 and parse_granularity("batch") == "batch" and parse_granularity("-1") == -1
    for good in ("sample", "batch", 1, 16):
        check_granularity(good)
    for bad in (0, -1, 1.0, False, "Batch", "2"):
        with pytest.raises(SettingsError) as err:
            check_granularity(bad)
        assert err.value.field == "granularity" and str(err.value).startswith("granularity must be")
