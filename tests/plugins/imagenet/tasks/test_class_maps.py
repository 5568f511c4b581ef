"""The packaged class maps equal the published files they come from."""

from __future__ import annotations

import json

from robustbench_cgn_plugins.imagenet.tasks.class_maps import (
    cue_conflict_categories,
    imagenet_names,
    imagenet_wnids,
    in9_classes,
    in_to_in9,
    subset_classes,
)


def test_imagenet_wnids_follow_the_class_index_order(shared_data):
    lines = (shared_data / "class_maps" / "categories.txt").read_text().splitlines()
    assert list(imagenet_wnids()) == [line.split()[0] for line in lines]
    assert imagenet_names()[0] == "tench"


def test_in9_map_equals_madrylab_in_to_in9(shared_data):
    published = json.loads((shared_data / "in9" / "in_to_in9.json").read_text())
    assert list(in_to_in9()) == [published[str(i)] for i in range(1000)]
    assert sum(v >= 0 for v in in_to_in9()) == 370
    names = [line.split()[0] for line in (shared_data / "in9" / "in9_classes.txt").open()]
    assert list(in9_classes()) == names


def test_cue_conflict_categories_equal_model_vs_human(shared_data):
    path = shared_data / "class_maps" / "cue_conflict_16class_imagenet_indices.json"
    published = json.loads(path.read_text())
    assert {k: list(v) for k, v in cue_conflict_categories().items()} == published
    assert sum(len(v) for v in cue_conflict_categories().values()) == 207


def test_imagenet_a_and_r_subsets():
    for subset in ("imagenet-a", "imagenet-r"):
        wnids, indices = subset_classes(subset)
        assert len(wnids) == len(indices) == 200
        assert [imagenet_wnids()[i] for i in indices] == list(wnids)
