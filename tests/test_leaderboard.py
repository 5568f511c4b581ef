"""Leaderboard aggregation (mean +- SE over seeds), references, sorting and every format."""

import json
import math

import pandas as pd
import pytest

from robustbench_cgn.leaderboard import MainMetric, build_leaderboard, config_labels
from robustbench_cgn.references import load_references
from robustbench_cgn.render import rich_tables, to_csv, to_json, to_markdown


def metrics_frame(rows):
    frame = pd.DataFrame(
        rows,
        columns=[
            "run_id",
            "benchmark",
            "generator",
            "classifier",
            "mix",
            "data_source",
            "seed",
            "metric",
            "key",
            "value",
            "n",
            "protocol",
            "higher_is_better",
        ],
    )
    return frame


def spec(seed, n=100):
    return {
        "generator": {"config": {"n": n}},
        "classifier": {"config": {}},
        "benchmark": {"config": {}},
        "seed": seed,
    }


@pytest.fixture
def example():
    rows, specs = [], {}
    # cgn: three seeds of acc 90, 92, 97 -> mean 93, sd 3.6056, se 2.0817
    for seed, value in enumerate([90.0, 92.0, 97.0]):
        run_id = f"cgn{seed}"
        rows.append(
            [
                run_id,
                "c-mnist",
                "cgn",
                "cnn",
                "generated",
                "mnist-full",
                seed,
                "test_acc",
                "",
                value,
                10000,
                "p",
                1,
            ]
        )
        rows.append(
            [
                run_id,
                "c-mnist",
                "cgn",
                "cnn",
                "generated",
                "mnist-full",
                seed,
                "test_acc",
                "class0",
                50.0,
                1000,
                "p",
                1,
            ]
        )
        specs[run_id] = spec(seed)
    rows.append(
        [
            "orig0",
            "c-mnist",
            "original",
            "cnn",
            "generated",
            "mnist-full",
            0,
            "test_acc",
            "",
            40.0,
            10000,
            "p",
            1,
        ]
    )
    specs["orig0"] = spec(0)
    return metrics_frame(rows), specs


def test_mean_and_standard_error_over_seeds(example):
    metrics, specs = example
    board = build_leaderboard(metrics, specs, None, {"c-mnist": MainMetric("test_acc")})
    cgn = board[board["generator"] == "cgn"].iloc[0]
    assert cgn["test_acc"] == pytest.approx(93.0)
    assert cgn["test_acc_se"] == pytest.approx(math.sqrt(13.0) / math.sqrt(3))
    assert cgn["seeds"] == 3
    single = board[board["generator"] == "original"].iloc[0]
    assert math.isnan(single["test_acc_se"]) and single["seeds"] == 1


def test_sorted_by_main_metric_in_its_direction(example):
    metrics, specs = example
    best_first = build_leaderboard(metrics, specs, None, {"c-mnist": MainMetric("test_acc")})
    assert list(best_first["generator"]) == ["cgn", "original"]
    lower = build_leaderboard(metrics, specs, None, {"c-mnist": MainMetric("test_acc", False)})
    assert list(lower["generator"]) == ["original", "cgn"]


def test_references_are_marked_and_optional(example):
    metrics, specs = example
    references = load_references()
    board = build_leaderboard(
        metrics, specs, references, {"c-mnist": MainMetric("test_acc")}, benchmark="c-mnist"
    )
    refs = board[board["kind"] == "reference"]
    assert len(refs) == 8  # Table 3: 3 paper + 5 reproduction rows
    paper_cgn = refs[refs["source"] == "paper: CGN"].iloc[0]
    assert paper_cgn["test_acc"] == 95.1
    assert list(board["test_acc"]) == sorted(board["test_acc"], reverse=True)
    without = build_leaderboard(metrics, specs, None, {}, benchmark="c-mnist")
    assert set(without["kind"]) == {"measured"}


def test_config_labels_name_only_varying_settings():
    labels = config_labels({"a": spec(0, n=100), "b": spec(1, n=100), "c": spec(0, n=1000)})
    assert labels == {"a": "generator.n=100", "b": "generator.n=100", "c": "generator.n=1000"}
    assert config_labels({"a": spec(0), "b": spec(1)}) == {"a": "default", "b": "default"}


def test_every_export_format(example):
    metrics, specs = example
    board = build_leaderboard(
        metrics, specs, load_references(), {"c-mnist": MainMetric("test_acc")}, benchmark="c-mnist"
    )
    csv_text = to_csv(board)
    parsed = pd.read_csv(pd.io.common.StringIO(csv_text))
    measured = parsed[parsed["kind"] == "measured"]
    assert measured.loc[measured["generator"] == "cgn", "test_acc"].iloc[0] == pytest.approx(93.0)
    assert "test_acc_se" in parsed.columns and "kind" in parsed.columns
    records = json.loads(to_json(board))
    assert {r["kind"] for r in records} == {"measured", "reference"}
    markdown = to_markdown(board)
    assert "93.00 ± 2.08" in markdown and "ref · paper: CGN" in markdown
    tables = rich_tables(board)
    assert len(tables) == 1 and tables[0].row_count == len(board)


def test_published_references_are_well_formed():
    references = load_references()
    assert not references.duplicated(["benchmark", "metric", "source", "label"]).any()
    humans = references[references["source"] == "humans"]
    assert humans["value"].tolist() == [0.959]
    assert set(references["source"]) == {"paper", "reproduction", "humans", "community"}


def test_rows_exist_only_for_measured_combinations_and_settings_compare_within_a_generator():
    """Two generators with different config schemas: no phantom cross rows, and settings only
    become columns where runs of the same generator differ."""

    def row(run_id, generator, value):
        return [run_id, "b", generator, "cnn", "generated", "d", 0, "acc", "", value, 1, "p", 1]

    specs = {
        "o": {"generator": {"config": {}}, "classifier": {"config": {}}},
        "c1": {"generator": {"config": {"n": 1, "w": "x"}}, "classifier": {"config": {}}},
        "c2": {"generator": {"config": {"n": 2, "w": "x"}}, "classifier": {"config": {}}},
    }
    frame = metrics_frame(
        [row("o", "original", 10.0), row("c1", "cgn", 80.0), row("c2", "cgn", 90.0)]
    )
    board = build_leaderboard(frame, specs, None, {"b": MainMetric("acc")})
    assert len(board) == 3
    assert sorted(board["config"]) == ["default", "generator.n=1", "generator.n=2"]
    header = to_markdown(board).splitlines()[2]
    assert "generator.n" in header and "generator.w" not in header


def test_string_settings_are_labelled_without_quotes():
    def with_weights(weights):
        return {"generator": {"config": {"weights": weights}}, "classifier": {}, "benchmark": {}}

    labels = config_labels({"a": with_weights("zoo"), "b": with_weights("/w.pth")})
    assert labels == {"a": "generator.weights=zoo", "b": "generator.weights=/w.pth"}


def test_tables_show_the_fewest_settings_that_tell_rows_apart():
    """The authors' checkpoint against a zoo tag differ in a dozen identity fields; a table
    names them by one weights column (file name, tag), the CSV keeps every field."""

    def row(run_id, value):
        return [run_id, "b", "cgn", "cnn", "generated", "d", 0, "acc", "", value, 1, "p", 1]

    def cgn_spec(weights, trained, sha):
        identity = {"weights": weights, "weights_sha256": sha, "trained": trained}
        return {"generator": {"config": {"weights": weights}, "identity": identity}}

    specs = {
        "authors": cgn_spec("/data/cgn_colored_MNIST.pth", {"iterations": None}, "aa"),
        "zoo": cgn_spec("cgn.c-mnist", {"iterations": 14000, "mode": "faithful"}, "bb"),
    }
    board = build_leaderboard(
        metrics_frame([row("authors", 91.0), row("zoo", 88.0)]), specs, None, {}
    )
    assert "generator.identity.trained.iterations=14000" in to_csv(board)
    lines = to_markdown(board).splitlines()
    header = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert header == ["generator", "classifier", "mix", "data", "generator.weights", "seeds", "acc"]
    body = "\n".join(lines[4:6])
    assert "cgn_colored_MNIST.pth" in body and "/data/" not in body and "cgn.c-mnist" in body


def test_rows_that_differ_only_by_a_hash_still_get_a_column():
    def row(run_id, value):
        return [run_id, "b", "cgn", "cnn", "generated", "d", 0, "acc", "", value, 1, "p", 1]

    specs = {
        run_id: {"generator": {"config": {"weights": "w.pth"}, "identity": {"sha256": run_id}}}
        for run_id in ("old", "new")
    }
    board = build_leaderboard(metrics_frame([row("old", 1.0), row("new", 2.0)]), specs, None, {})
    markdown = to_markdown(board)
    assert "generator.sha256" in markdown.splitlines()[2]
    assert "| old " in markdown and "| new " in markdown


def test_a_pipe_or_line_break_in_a_label_cannot_break_the_markdown_table():
    """Issue 20: an imported label with `|` or a newline split its row into extra columns."""
    rows = [
        [f"r{i}", "c-mnist", "original", label, "generated", "mnist-full", 0, "test_acc", "",
         50.0 + i, 100, "p", True]
        for i, label in enumerate(["a|b", "two\nlines", "plain"])
    ]  # fmt: skip
    specs = {f"r{i}": spec(0) for i in range(3)}
    board = build_leaderboard(
        metrics_frame(rows), specs, None, {"c-mnist": MainMetric("test_acc")}, benchmark="c-mnist"
    )
    table = [line for line in to_markdown(board).splitlines() if line.startswith("|")]
    columns = {line.replace("\\|", "").count("|") for line in table}
    assert len(table) == 2 + 3 and len(columns) == 1, table
    assert any("a\\|b" in line for line in table) and any("two lines" in line for line in table)
