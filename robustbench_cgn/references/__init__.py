"""Published reference numbers shipped with cgnbench (paper, reproduction, humans, community)."""

from __future__ import annotations

from importlib import resources

import pandas as pd


def load_references() -> pd.DataFrame:
    """One row per published number: benchmark, metric, value, source, label, components."""
    with resources.files(__package__).joinpath("published.csv").open("r") as handle:
        frame = pd.read_csv(handle, keep_default_na=False)
    frame["value"] = frame["value"].astype(float)
    return frame
