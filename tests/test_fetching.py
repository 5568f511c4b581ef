"""``cgnbench fetch`` and ``run --offline`` against a real HTTP server on 127.0.0.1 serving
fixture files in the release formats (an IN-9 ``.tar.gz`` laid out like MadryLab's, an exported
ImageNet CGN with its JSON sidecar), ending in the headline command ``run -g cgn -b in9``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile

import pytest
import torch
from conftest import run_cli
from PIL import Image

from robustbench_cgn_plugins.imagenet.tasks.class_maps import imagenet_wnids, in9_classes
from robustbench_cgn_plugins.imagenet_cgn.weights import AUTHORS_RELEASE, random_cgn

IN9_ARCHIVE = "backgrounds_challenge_data.tar.gz"


def jpeg(seed: int, size: int = 40) -> bytes:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def in9_release(per_class: int = 2) -> bytes:
    """A tiny IN-9 in the release's layout: ``bg_challenge/<variant>/val/<k>_<name>/*.JPEG``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for variant in ("original", "mixed_rand"):
            for k, name in enumerate(in9_classes()):
                for i in range(per_class):
                    data = jpeg(100 * k + i + (0 if variant == "original" else 50))
                    member = f"bg_challenge/{variant}/val/{k}_{name.lower()}/n{k}_{i}.JPEG"
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def tiny_cgn_export() -> tuple[bytes, bytes]:
    """A seeded random ``tiny`` CGN as ``cgnbench train-cgn-imagenet`` exports it: the weights
    (no BigGAN ground truth) and the JSON sidecar naming its architecture."""
    cgn = random_cgn("tiny", "small", seed=3)
    state = {k: v for k, v in cgn.state_dict().items() if not k.startswith("biggan_gt.")}
    out = io.BytesIO()
    torch.save(state, out)
    sidecar = {**AUTHORS_RELEASE, "format": "test", "architecture": "tiny"}
    sidecar["u2net_variant"] = "small"
    return out.getvalue(), json.dumps(sidecar).encode()


@pytest.fixture
def real_train_folder(tmp_path):
    """Two ImageNet classes in the train layout ``<root>/<wnid>/*.JPEG``."""
    root = tmp_path / "imagenet_train"
    wnids = list(imagenet_wnids())
    for cls in (1, 207):
        folder = root / wnids[cls]
        folder.mkdir(parents=True)
        for i in range(2):
            (folder / f"{wnids[cls]}_{i}.JPEG").write_bytes(jpeg(1000 + cls + i))
    return root


@pytest.fixture
def mirror(release_server, monkeypatch):
    """The server as an institute mirror (``CGNBENCH_MIRROR``) holding the IN-9 release."""
    release_server.add(f"mirror/in9/{IN9_ARCHIVE}", in9_release())
    monkeypatch.setenv("CGNBENCH_MIRROR", release_server.url("mirror"))
    return release_server


def test_fetch_a_dataset_from_a_mirror_then_list_the_cache(mirror, _isolated_home):
    out = run_cli("fetch", "in9").stdout
    assert "in9" in out and "download" in out
    cache = _isolated_home / "cache" / "datasets" / "in9"
    assert sorted(p.name for p in (cache / "bg_challenge").iterdir()) == [
        "mixed_rand",
        "original",
    ]
    assert not (cache / IN9_ARCHIVE).exists()  # extracted, then removed; its sum is kept
    sums = (cache / "SHA256SUMS").read_text().split()
    assert sums[1] == IN9_ARCHIVE and len(sums[0]) == 64

    again = run_cli("fetch", "in9").stdout  # present: no second download
    assert "cache" in again and len(mirror.requests_for(f"mirror/in9/{IN9_ARCHIVE}")) == 1

    assert "in9" in run_cli("fetch", "--list").stdout
    (listed,) = json.loads(run_cli("fetch", "--list", "-f", "json").stdout)
    assert (listed["name"], listed["kind"], listed["sha256"]) == ("in9", "dataset", sums[0])
    assert listed["files"] == 37  # 36 images and SHA256SUMS
    assert listed["size"] == sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())


def test_fetch_failures_are_one_line_each_and_exit_1(mirror):
    mirror.add("mirror/u2net.full/u2net.pth", b"not the published U2-Net")
    result = run_cli("fetch", "u2net.full", "imagenet-a", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    by_name = {line.split(":", 1)[0]: line for line in lines}
    assert "checksum is wrong" in by_name["u2net.full"] and ".bad" in by_name["u2net.full"]
    assert "imagenet-a.tar" in by_name["imagenet-a"]  # 404 on the mirror, no network beyond
    unknown = run_cli("fetch", "in-9", check=False)
    assert unknown.returncode != 0 and "did you mean" in unknown.stderr.lower()


def test_offline_run_without_weights_is_one_line_and_touches_no_network(mirror, tmp_path):
    result = run_cli("run", "-g", "cgn", "-b", "in9", "--offline", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "cgn.pth" in message and "drive.google.com" in message
    assert "cgnbench fetch cgn-imagenet.authors" in message
    assert mirror.log == []  # not even the mirror was asked


def test_headline_command_end_to_end_on_fetched_weights_and_in9(
    mirror, real_train_folder, tmp_path
):
    """`cgnbench fetch --for` on the login node, then `cgnbench run -g cgn -b in9 --offline`:
    tiny CGN weights by URL (with their sidecar), IN-9 from the mirror, real ImageNet train
    images from ``classifier.real_data``; generation, ensemble training and IN-9 scoring."""
    weights, sidecar = tiny_cgn_export()
    url = mirror.add("release/tiny_cgn.pth", weights)
    mirror.add("release/tiny_cgn.json", sidecar)
    run_set = [
        f"generator.weights={url}",
        "generator.n_counterfactuals=8",
        "generator.batch_size=4",
        "classifier.backbone_weights=random",
        "classifier.epochs=1",
        "classifier.image_size=32",
        "classifier.batch_size=4",
        "classifier.max_steps_per_epoch=2",
        "benchmark.batch_size=8",
    ]
    sets = [arg for value in run_set for arg in ("--set", value)]
    fetched = run_cli("fetch", "--for", "-g", "cgn", "-b", "in9", *sets, "-f", "json").stdout
    by_name = {item["name"]: item for item in json.loads(fetched)}
    assert sorted(by_name) == sorted(["in9", url])
    assert by_name[url]["path"].endswith("tiny_cgn.pth")
    assert by_name[url]["sha256"] == hashlib.sha256(weights).hexdigest()
    requests_before = len(mirror.log)
    assert mirror.requests_for("release/tiny_cgn.json")  # the sidecar came along

    # the real images are missing: one line naming the setting
    missing = run_cli("run", "-g", "cgn", "-b", "in9", "--offline", *sets, check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "real_data" in missing.stderr

    sets += ["--set", f"classifier.real_data={real_train_folder}"]
    run_cli("run", "-g", "cgn", "-b", "in9", "--offline", *sets, timeout=600)
    assert len(mirror.log) == requests_before  # the offline run asked nothing of the network
    rows = list(csv.DictReader(io.StringIO(run_cli("export").stdout)))
    metrics = {r["metric"]: r for r in rows if r["key"] == ""}
    assert int(metrics["original_acc"]["n"]) == 18 and int(metrics["mixed_rand_acc"]["n"]) == 18
    assert 0.0 <= float(metrics["original_acc"]["value"]) <= 100.0
    shown = json.loads(run_cli("show", rows[0]["run_id"], "--json").stdout)
    assert shown["generator"] == "cgn-imagenet" and shown["classifier"] == "cgn-ensemble"
    assert shown["spec"]["generator"]["identity"] == {
        "weights": url,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    assert shown["provenance"]["training_data"]["n"] == 8
    assert "already complete" in run_cli("run", "-g", "cgn", "-b", "in9", "--offline", *sets).stdout
