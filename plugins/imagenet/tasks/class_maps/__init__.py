"""Class maps of the ImageNet benchmarks, shipped with the package.

* ImageNet-1k WNIDs and names, and the 200-class subsets of ImageNet-A / ImageNet-R, come from
  the files ``timm`` ships (``timm/data/_info``), so our class order is timm's (sorted WNIDs).
* The IN-9 superclass map (MadryLab's ``in_to_in9.json``, stored compactly as index ranges)
  and the 16 cue-conflict categories (model-vs-human's ``human_categories``) ship here as JSON.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

IMAGENET_CLASSES = 1000
SUBSETS = ("imagenet-a", "imagenet-r")


def _timm_info(name: str) -> list[str]:
    text = resources.files("timm.data").joinpath("_info", name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def _packaged(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(name).read_text())


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WNIDs in class-index order."""
    wnids = tuple(_timm_info("imagenet_synsets.txt"))
    if len(wnids) != IMAGENET_CLASSES:
        raise RuntimeError(f"timm's imagenet_synsets.txt lists {len(wnids)} classes, not 1000")
    return wnids


@cache
def imagenet_index() -> dict[str, int]:
    """WNID -> ImageNet class index."""
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


@cache
def imagenet_names() -> tuple[str, ...]:
    """A short name per class (the first WordNet lemma, e.g. ``tench``)."""
    lemmas = {}
    for line in _timm_info("imagenet_synset_to_lemma.txt"):
        wnid, _, lemma = line.partition("\t")
        lemmas[wnid] = lemma.split(",")[0].strip()
    return tuple(lemmas.get(wnid, wnid) for wnid in imagenet_wnids())


@cache
def subset_classes(subset: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``(wnids, ImageNet indices)`` of ImageNet-A or ImageNet-R's 200 classes, in the order
    of the dataset's sorted class folders."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; use one of {', '.join(SUBSETS)}")
    prefix = subset.replace("-", "_")
    wnids = tuple(_timm_info(f"{prefix}_synsets.txt"))
    indices = tuple(int(i) for i in _timm_info(f"{prefix}_indices.txt"))
    index = imagenet_index()
    if [index[w] for w in wnids] != list(indices):
        raise RuntimeError(f"timm's {subset} synsets and indices disagree")
    return wnids, indices


@cache
def in9_classes() -> tuple[str, ...]:
    """The nine IN-9 superclass names, in IN-9 index order (Dog, Bird, ...)."""
    return tuple(_packaged("in9.json")["classes"])


@cache
def in_to_in9() -> tuple[int, ...]:
    """ImageNet index -> IN-9 superclass index, -1 for the 630 unmapped classes."""
    mapping = [-1] * IMAGENET_CLASSES
    for start, stop, superclass in _packaged("in9.json")["ranges"]:
        mapping[start:stop] = [superclass] * (stop - start)
    return tuple(mapping)


@cache
def cue_conflict_categories() -> dict[str, tuple[int, ...]]:
    """The 16 cue-conflict categories (sorted) -> their ImageNet indices (207 in all)."""
    categories = _packaged("cue_conflict_16.json")["categories"]
    return {name: tuple(categories[name]) for name in sorted(categories)}
