"""method_names: how compared methods are labelled in the results."""

import pytest

from crossd.evaluate.config import method_records
from crossd.evaluate.methods import method_names


def test_labels_are_inits_then_checkpoint_stems_then_explicit_labels():
    methods = [("i3d", "a/regular.safetensors"), ("crossd", "x/model.safetensors", "crossd+volumes"), ("random", None)]
    assert [m.name for m in method_names(methods)] == ["i3d", "crossd+volumes", "random"]
    twice = [("crossd", "a/one.safetensors"), ("crossd", "b/two.safetensors")]
    assert [m.name for m in method_names(twice)] == ["crossd@one", "crossd@two"]
    assert method_records(methods)[1] == ["crossd", "x/model.safetensors", "crossd+volumes"]


def test_a_label_given_twice_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        method_names([("crossd", "a.safetensors", "same"), ("i3d", "b.safetensors", "same")])
