"""Export a `cgnbench train-generator` checkpoint as a model-zoo entry shipped in the package.

    python scripts/export_zoo_entry.py RUN_DIR/checkpoints/ckpt_00020000.pt cgn.c-mnist

writes ``plugins/mnist/weights/<name>.pth`` (the generator alone) and ``<name>.json`` (training
config, data provenance, VGG hash, iterations). Machine-specific paths in the record are
replaced by placeholders (``DATA`` for the data folder, ``runs/<name>`` for the run folder) and
the reproducing command asks for exactly the exported number of iterations, so a user can
retrain the entry with ``--data-dir`` pointing at their MNIST. The zoo lists an entry as soon as
its weights file exists; ``tests/plugins/mnist/test_mnist_zoo.py`` and the quality tests in
``test_mnist_cf_quality.py`` then check it.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from robustbench_cgn.data.download import sha256_file
from robustbench_cgn_plugins.mnist.training import export_generator_weights, load_checkpoint

WEIGHTS = Path(__file__).resolve().parents[1] / "plugins" / "mnist" / "weights"


def _portable_command(command: str, iterations: int, name: str) -> str:
    args = shlex.split(command)
    replace = {"--data-dir": "DATA", "--out": f"runs/{name}", "--iterations": str(iterations)}
    for flag, value in replace.items():
        if flag in args:
            args[args.index(flag) + 1] = value
    if "--vgg-weights" in args:
        args[args.index("--vgg-weights") + 1] = "DATA/vgg16/vgg16_imagenet_caffe_features23.pth"
    return shlex.join(args)


def export(checkpoint: Path, name: str, out_dir: Path = WEIGHTS) -> Path:
    ckpt = load_checkpoint(checkpoint)
    iterations = int(ckpt["iteration"])
    out = export_generator_weights(ckpt, out_dir / f"{name}.pth")
    sidecar = out.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    data_dir = (record.get("data") or {}).get("data_dir")
    record["command"] = _portable_command(record["command"], iterations, name)
    record["config"]["iterations"] = iterations
    record["source_checkpoint"] = f"runs/{name}/checkpoints/{checkpoint.name}"
    text = json.dumps(record, indent=2) + "\n"
    if data_dir:
        text = text.replace(data_dir, "DATA")
    sidecar.write_text(text)
    assert json.loads(text)["weights_sha256"] == sha256_file(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("name", help="zoo name, e.g. cgn.c-mnist")
    args = parser.parse_args()
    print(export(args.checkpoint, args.name))


if __name__ == "__main__":
    main()
