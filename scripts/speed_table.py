"""Print README's MNIST speed tables from the benchmark records in ``docs/bench/``:
``cgn_training.json`` (``scripts/bench_cgn_training.py --json``) and ``mnist_models.json``
(``scripts/bench_mnist_models.py --skip train rss --json``). ``tests/test_readme.py`` checks that
README.md holds exactly this output between its ``speed-table`` markers.

    python scripts/speed_table.py            # print the tables
    python scripts/speed_table.py --write    # replace them in README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_blocks  # noqa: E402  (a sibling script module)

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "bench"
BLOCK = "speed-table"


def machine(record: dict, threads: int) -> str:
    hw = record["hardware"]
    peaks = hw["gemm_tflops"]["cpu"]
    return (
        f"{hw['cpu']}, {threads} threads, flags {', '.join(hw['cpu_flags']) or 'none listed'}; "
        f"GEMM peak fp32 {peaks['fp32']:.2f} / bf16 {peaks['bf16']:.2f} TFLOP/s (measured in the "
        f"run), torch {hw['torch']}"
    )


def training_table(results: dict) -> str:
    """The CGN training table of a ``bench_cgn_training.py`` record."""
    lines = [
        machine(results, results["threads"]),
        "",
        "| batch | variant | s / step (min) | reference / variant | step's VGG FLOP/s, share of "
        "GEMM peak |",
        "|---|---|---|---|---|",
    ]
    for key, entry in results.items():
        if not key.startswith("batch"):
            continue
        for kind, st in entry["seconds_per_step"].items():
            lines.append(
                f"| {key.removeprefix('batch')} | {kind} | {st['min']:.3f} | "
                f"{entry['reference_over'][kind]:.2f}x | "
                f"{100 * entry['vgg'][kind]['fraction_of_peak']:.0f} % |"
            )
    return "\n".join(lines)


def models_table(results: dict) -> str:
    """Counterfactual generation and the MNIST CNN of a ``bench_mnist_models.py`` record."""
    gen, cnn = results["generation"], results["classifier"]
    lines = [
        machine(results, results["threads"]),
        "",
        "| what | cgnbench | reference loop, same run | ratio |",
        "|---|---|---|---|",
    ]
    for k in (1, 10):
        g = gen[f"no_cfs_{k}"]
        for prefix, what in (("fused", ""), ("fused_bf16", ", bf16")):
            lines.append(
                f"| counterfactuals, {k} per mask{what} | {g[f'{prefix}_best_img_s']:,.0f} img/s | "
                f"{g['reference_loop_img_s']:,.0f} img/s | "
                f"{g[f'{prefix}_best_img_s'] / g['reference_loop_img_s']:.1f}x |"
            )
    lines.append(
        f"| MNIST CNN training / evaluation | {cnn['train_img_s']:,.0f} / "
        f"{cnn['eval_img_s']:,.0f} img/s | | |"
    )
    return "\n".join(lines)


def tables() -> str:
    training = json.loads((BENCH / "cgn_training.json").read_text())
    models = json.loads((BENCH / "mnist_models.json").read_text())
    return (
        "CGN training iteration (colored config, `scripts/bench_cgn_training.py`):\n\n"
        + training_table(training)
        + "\n\nCounterfactual generation and the classifier (`scripts/bench_mnist_models.py`):\n\n"
        + models_table(models)
    )


def readme_block(text: str) -> str:
    return readme_blocks.block(text, BLOCK)


def main() -> None:
    readme_blocks.main(BLOCK, tables, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
