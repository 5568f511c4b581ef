"""Shape bias on the cue-conflict stimuli (Geirhos et al. 2019; model-vs-human protocol).

A stimulus ``<shape><k>-<texture><j>.png`` shows one category's shape with another's texture.
Stimuli whose shape and texture categories agree are dropped (1,200 of 1,280 remain). A
decision counts as a *shape* hit when it names the shape category and a *texture* hit when it
names the texture category; ``shape_bias = shape hits / (shape hits + texture hits)``. Per
category, as model-vs-human defines it, the same ratio within the trials whose *shape* is that
category (with the fractions of those trials decided by shape and by texture). Models
decide among the 16 categories by the mean softmax probability over each category's ImageNet
indices (:func:`decide_16`). Decisions of models and of human observers are exchanged in the
model-vs-human raw-data CSV format (:data:`RAW_DATA_COLUMNS`), so both score the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import pandas as pd
import torch

from robustbench_cgn import MetricResult

from .class_maps import cue_conflict_categories

RAW_DATA_COLUMNS = (
    "subj",
    "session",
    "trial",
    "rt",
    "object_response",
    "category",
    "condition",
    "imagename",
)
_STIMULUS = re.compile(r"(?:^|_)([a-z]+)\d+-([a-z]+)\d+\.(?:png|jpe?g)$")


def parse_stimulus(name: str) -> tuple[str, str]:
    """``"airplane1-bicycle2.png"`` or model-vs-human's ``"0001_s5n_s01_0_bird_00_bird3-bird2.png"``
    -> ``(shape, texture)`` categories."""
    match = _STIMULUS.search(Path(name).name)
    if match is None:
        raise ValueError(f"{name!r} is not a cue-conflict stimulus name (<shape>N-<texture>M.png)")
    return match.group(1), match.group(2)


def decide_16(
    probabilities: torch.Tensor, category_indices: Mapping[str, Sequence[int]]
) -> list[str]:
    """16-way decisions from ``[N, 1000]`` ImageNet probabilities (softmax already applied):
    per category the mean probability over its indices, then the argmax category."""
    categories = sorted(category_indices)
    scores = torch.stack(
        [probabilities[:, list(category_indices[c])].mean(dim=1) for c in categories], dim=1
    )
    return [categories[i] for i in scores.argmax(dim=1).tolist()]


@dataclass(frozen=True)
class ShapeBias:
    """Shape bias and the fractions behind it, overall and per shape category
    (``per_category[c]``: ``trials`` with shape c, ``shape_hits``, ``texture_hits``,
    ``shape_fraction`` and ``texture_fraction`` of those trials, ``shape_bias``)."""

    shape_bias: float
    shape_fraction: float  # shape hits / all conflict trials
    texture_fraction: float
    n: int  # conflict trials scored
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)


def shape_bias(
    decisions: Sequence[str], shapes: Sequence[str], textures: Sequence[str]
) -> ShapeBias:
    """Score decisions against shape/texture labels; trials whose shape equals their texture
    are dropped. A decision that is neither (another category, or ``na``) counts in ``n``."""
    frame = pd.DataFrame({"decision": decisions, "shape": shapes, "texture": textures})
    frame = frame[frame["shape"] != frame["texture"]]
    if frame.empty:
        raise ValueError("no cue-conflict trials (every shape equals its texture)")
    frame = frame.assign(
        shape_hit=frame["decision"] == frame["shape"],
        texture_hit=frame["decision"] == frame["texture"],
    )
    hits_shape, hits_texture = int(frame["shape_hit"].sum()), int(frame["texture_hit"].sum())
    per_category = {}
    for category, trials in frame.groupby("shape", sort=True):  # model-vs-human's grouping
        s, t, n = int(trials["shape_hit"].sum()), int(trials["texture_hit"].sum()), len(trials)
        per_category[str(category)] = {
            "trials": n,
            "shape_hits": s,
            "texture_hits": t,
            "shape_fraction": s / n,
            "texture_fraction": t / n,
            "shape_bias": s / (s + t) if s + t else float("nan"),
        }
    total = hits_shape + hits_texture
    return ShapeBias(
        shape_bias=hits_shape / total if total else float("nan"),
        shape_fraction=hits_shape / len(frame),
        texture_fraction=hits_texture / len(frame),
        n=len(frame),
        per_category=per_category,
    )


#: Responses that are no decision (no key pressed in time) rather than a wrong category.
NO_RESPONSE = ("", "na")
#: Below this share of responses that are a category or no response, a file is refused: its
#: responses are spelt differently (capitalised, plural, padded) and would all score as misses.
MIN_KNOWN_RESPONSES = 0.95


def metric_results(
    score: ShapeBias,
    protocol: str,
    key: Callable[[str], str] = lambda part: part,
    extra: dict | None = None,
) -> list[MetricResult]:
    """What a shape-bias score stores: overall shape bias (n = conflict trials) and the two
    fractions; per shape category (``key("category=<c>")``) its shape bias with n = the
    trials decided by shape or texture, and its fractions with n = its trials."""
    results = [
        MetricResult("shape_bias", score.shape_bias, score.n, protocol, key(""), extra or {}),
        MetricResult("shape_fraction", score.shape_fraction, score.n, protocol, key("")),
        MetricResult("texture_fraction", score.texture_fraction, score.n, protocol, key("")),
    ]
    for category, v in score.per_category.items():
        part = key(f"category={category}")
        decided = v["shape_hits"] + v["texture_hits"]
        results += [
            MetricResult("shape_bias", v["shape_bias"], decided, protocol, part),
            MetricResult("shape_fraction", v["shape_fraction"], v["trials"], protocol, part),
            MetricResult("texture_fraction", v["texture_fraction"], v["trials"], protocol, part),
        ]
    return results


def read_raw_data(
    paths: Iterable[str | PathLike[str]], categories: Collection[str] | None = None
) -> pd.DataFrame:
    """Concatenate model-vs-human raw-data CSVs, with ``shape``/``texture`` columns parsed
    from ``imagename``. Each file is checked first and refused with one line naming it and
    its offending lines (``ValueError``): missing columns, an empty or header-only file,
    stimulus names that are not cue-conflict stimuli of ``categories`` (default: the 16),
    a ``category`` column that is not the stimulus's shape, and responses of which fewer than
    :data:`MIN_KNOWN_RESPONSES` are a category or no response."""
    known = set(cue_conflict_categories() if categories is None else categories)
    frames = [_checked_file(Path(path), known) for path in paths]
    if not frames:
        raise ValueError("no raw-data CSV files given")
    return pd.concat(frames, ignore_index=True)


def _lines(rows: Sequence[int]) -> str:
    """File line numbers (header = line 1) of data rows, the first few of them."""
    shown = ", ".join(str(r + 2) for r in rows[:5])
    return f"line{'s' if len(rows) > 1 else ''} {shown}" + (
        f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    )


def _checked_file(path: Path, known: set[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"object_response": str, "category": str},
                            keep_default_na=False)  # fmt: skip
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the file is empty (expected a model-vs-human raw-data CSV)"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in RAW_DATA_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a model-vs-human raw-data CSV (missing {missing})")
    if frame.empty:
        raise ValueError(f"{path}: no trials (only the header line)")
    parsed, unparsable = [], []
    for row, name in enumerate(frame["imagename"].astype(str)):
        try:
            parsed.append(parse_stimulus(name))
        except ValueError:
            parsed.append(("", ""))
            unparsable.append(row)
    if unparsable:
        raise ValueError(
            f"{path}: {_lines(unparsable)}: imagename is not a cue-conflict stimulus "
            f"(<shape>N-<texture>M.png), e.g. {frame['imagename'].iloc[unparsable[0]]!r}"
        )
    frame["shape"] = [shape for shape, _ in parsed]
    frame["texture"] = [texture for _, texture in parsed]
    unknown = [r for r, (s, t) in enumerate(parsed) if s not in known or t not in known]
    if unknown:
        example = frame["imagename"].iloc[unknown[0]]
        raise ValueError(
            f"{path}: {_lines(unknown)}: stimulus categories outside the {len(known)} "
            f"cue-conflict categories, e.g. {example!r}"
        )
    category = frame["category"].str.strip()
    contradicting = [r for r, same in enumerate(category == frame["shape"]) if not same]
    if contradicting:
        r = contradicting[0]
        raise ValueError(
            f"{path}: {_lines(contradicting)}: category {category.iloc[r]!r} is not the shape "
            f"of {frame['imagename'].iloc[r]!r} ({frame['shape'].iloc[r]!r})"
        )
    responses = frame["object_response"].str.strip()
    valid = responses.isin(known) | responses.isin(NO_RESPONSE)
    if valid.mean() < MIN_KNOWN_RESPONSES:
        bad = [r for r, ok in enumerate(valid) if not ok]
        raise ValueError(
            f"{path}: {_lines(bad)}: responses that are none of the {len(known)} categories "
            f"(e.g. {frame['object_response'].iloc[bad[0]]!r}; {valid.mean():.0%} are known, "
            f"{MIN_KNOWN_RESPONSES:.0%} needed): write them as the lower-case category names"
        )
    return frame


def score_raw_data(data: pd.DataFrame) -> ShapeBias:
    """Shape bias of the pooled decisions in a raw-data frame (humans: all observers)."""
    return shape_bias(
        data["object_response"].astype(str).str.strip().tolist(),
        data["shape"].tolist(),
        data["texture"].tolist(),
    )


def write_raw_data(
    path: str | PathLike[str],
    subject: str,
    imagenames: Sequence[str],
    decisions: Sequence[str],
    session: int = 1,
) -> Path:
    """Write decisions in the model-vs-human raw-data format (``rt`` NaN, ``condition`` 0,
    ``category`` the shape label), importable by :func:`read_raw_data` and by model-vs-human."""
    shapes = [parse_stimulus(name)[0] for name in imagenames]
    frame = pd.DataFrame(
        {
            "subj": subject,
            "session": session,
            "trial": range(1, len(imagenames) + 1),
            "rt": float("nan"),
            "object_response": list(decisions),
            "category": shapes,
            "condition": 0,
            "imagename": [Path(name).name for name in imagenames],
        },
        columns=list(RAW_DATA_COLUMNS),
    )
    out = Path(path)
    frame.to_csv(out, index=False)
    return out
