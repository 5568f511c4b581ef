"""One way from a weights setting or a dataset name to verified local files.

``weights=auto|name.tag|PATH|URL`` becomes a :class:`ResolvedFile` (path, sha256, label) with
:func:`resolve_weights`; a registered :class:`~.artifacts.WeightsSpec` with
:func:`resolve_spec`; a :class:`~.artifacts.DatasetSpec` becomes a folder with
:func:`resolve_dataset`. Files are looked for in this order, and downloaded only as the last
step (never when ``CGNBENCH_OFFLINE=1`` / ``--offline``):

1. an override: ``CGNBENCH_WEIGHTS="name.tag=PATH,..."`` (or a spec's legacy variable, e.g.
   ``CGNBENCH_VGG16_WEIGHTS``); this module is the one place that reads such variables;
2. the spec's ``source``: a package resource (weights shipped in a wheel) or a file;
3. a copy under the user's ``--data-dir`` (the spec's ``local`` paths);
4. the cache: ``<cache>/weights/<name>/<file>``, ``<cache>/datasets/<name>/``, where ``<cache>``
   is ``$CGNBENCH_CACHE``, else ``$CGNBENCH_HOME/cache``;
5. a download from ``CGNBENCH_MIRROR`` prefixes (``<mirror>/<name>/<file>``, for clusters with
   an internal mirror), then the spec's own URLs.

Resolutions are remembered per process (a file is hashed once per run however often a
component asks) and recorded by components in their identity and provenance.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .artifacts import DatasetSpec, RemoteFile, WeightsSpec
from .data.archives import safe_extract
from .data.digests import cached_sha256, verify_file
from .data.download import fetch_file
from .errors import ChecksumError, DataNotFoundError

__all__ = [
    "MIRROR_ENV",
    "WEIGHTS_ENV",
    "ResolvedFile",
    "dataset_folder",
    "fetch_hint",
    "override",
    "resolve_dataset",
    "resolve_spec",
    "resolve_weights",
    "spec_cache_path",
]

WEIGHTS_ENV = "CGNBENCH_WEIGHTS"
MIRROR_ENV = "CGNBENCH_MIRROR"
URL_SCHEMES = ("http://", "https://", "file://", "gdrive:")
RUN_PREFIX = "run:"  # weights exported by a finished `cgnbench train-generator` run
PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class ResolvedFile:
    """A weights file ready to load: where it is, its sha256, and the label runs show
    (the registered name, the URL, or the file's absolute path); ``origin`` says how it was
    found (override, package, data-dir, cache, download, path, url)."""

    path: Path
    sha256: str
    label: str
    origin: str

    def provenance(self) -> dict[str, str]:
        return {
            "weights": self.label,
            "weights_sha256": self.sha256,
            "weights_path": str(self.path),
            "weights_origin": self.origin,
        }


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from .settings import resolve_paths

    return resolve_paths().cache


def _data_root(data_dir: str | os.PathLike | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from .settings import resolve_paths

    return resolve_paths().data


def fetch_hint(name: str) -> str:
    """The command that downloads ``name`` ahead of a run (for offline messages)."""
    return f"run `cgnbench fetch {name}` where the network is reachable"


# --- environment: the one place that reads weights variables ----------------------------------


def _overrides() -> dict[str, str]:
    pairs = [p for p in os.environ.get(WEIGHTS_ENV, "").split(",") if p.strip()]
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise DataNotFoundError(
                f"{WEIGHTS_ENV}: {pair.strip()!r} is not NAME=PATH (e.g. "
                f"{WEIGHTS_ENV}=biggan.deep-256=/models/biggan.bin,u2net.full=/models/u2net.pth)"
            )
        out[name.strip()] = path.strip()
    return out


def override(spec: WeightsSpec) -> tuple[str, str] | None:
    """(variable, path) overriding ``spec`` (``CGNBENCH_WEIGHTS`` or the spec's legacy
    variable), or ``None``."""
    given = _overrides().get(spec.name)
    if given:
        return f"{WEIGHTS_ENV}[{spec.name}]", given
    if spec.env and os.environ.get(spec.env, "").strip():
        return spec.env, os.environ[spec.env].strip()
    return None


def _mirrors(name: str, rel: str) -> list[str]:
    prefixes = [m.strip().rstrip("/") for m in os.environ.get(MIRROR_ENV, "").split(",")]
    return [f"{m}/{name}/{rel}" for m in prefixes if m]


# --- weights ------------------------------------------------------------------------------------

_RESOLVED: dict[tuple, tuple[ResolvedFile, int]] = {}


def _remember(key: tuple, make: Callable[[], ResolvedFile]) -> ResolvedFile:
    hit = _RESOLVED.get(key)
    if hit is not None:
        resolved, mtime = hit
        try:
            if resolved.path.stat().st_mtime_ns == mtime:
                return resolved
        except OSError:
            pass
    resolved = make()
    _RESOLVED[key] = (resolved, resolved.path.stat().st_mtime_ns)
    return resolved


def spec_cache_path(spec: WeightsSpec, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where a downloaded copy of ``spec`` lives: ``<cache>/weights/<name>/<file>``."""
    return _cache_root(cache_dir) / "weights" / spec.name / spec.file_name


def _package_file(source: str) -> Path | None:
    if not source.startswith(PACKAGE_PREFIX):
        return None
    module, _, rel = source[len(PACKAGE_PREFIX) :].partition("/")
    try:
        return Path(str(resources.files(module).joinpath(rel)))
    except ModuleNotFoundError:
        return None


def _check(path: Path, spec: WeightsSpec | RemoteFile, where: str) -> None:
    try:
        verify_file(path, sha256=spec.sha256, md5=spec.md5)
    except ChecksumError as exc:
        raise ChecksumError(f"{where}: {exc}") from None


def resolve_spec(
    spec: WeightsSpec,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ResolvedFile:
    """The local file of a registered weights spec (module docstring for the search order).

    An override or a ``--data-dir`` copy that fails the spec's checksum is an error (it is the
    user's file, not ours to replace); a cached copy that fails it is downloaded again.
    """
    data_root = _data_root(data_dir)
    key = (
        "spec",
        spec.name,
        spec.source,
        spec.sha256,
        spec.urls,
        override(spec),
        os.environ.get(MIRROR_ENV, ""),
        str(data_root),
        str(_cache_root(cache_dir)),
        download,
    )
    return _remember(key, lambda: _resolve_spec(spec, data_root, cache_dir, download))


def _resolve_spec(
    spec: WeightsSpec, data_root: Path | None, cache_dir: str | os.PathLike | None, download: bool
) -> ResolvedFile:
    given = override(spec)
    if given is not None:
        variable, text = given
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / spec.file_name
        if not path.is_file():
            raise DataNotFoundError(f"{variable}={text} does not name an existing file")
        return ResolvedFile(path, cached_sha256(path), spec.name, "override")
    packaged = _package_file(spec.source)
    if packaged is None and spec.source and not spec.source.startswith(URL_SCHEMES):
        packaged = Path(spec.source).expanduser()  # a file that ships with the plugin
    if packaged is not None:
        if not packaged.is_file():
            raise DataNotFoundError(f"{spec.name} is not in this installation ({spec.source})")
        _check(packaged, spec, f"{spec.name} (damaged installation?)")
        return ResolvedFile(packaged, cached_sha256(packaged), spec.name, "package")
    if data_root is not None:
        for rel in spec.local:
            candidate = data_root / rel
            if candidate.is_file():
                _check(candidate, spec, f"{spec.name} copy under --data-dir")
                return ResolvedFile(candidate, cached_sha256(candidate), spec.name, "data-dir")
    hub = torch_hub_path(spec)
    if hub is not None and hub.is_file():  # torch hub checked the hash when it downloaded it
        return ResolvedFile(hub, cached_sha256(hub), spec.name, "torch-hub")
    target = spec_cache_path(spec, cache_dir)
    cached = target.is_file()
    if not spec.urls and not cached:
        local = f" or put it at <data-dir>/{spec.local[0]}" if spec.local else ""
        raise DataNotFoundError(
            f"{spec.name} ({spec.file_name}) has no download address: place it at {target}"
            f"{local}, or name it in {WEIGHTS_ENV}={spec.name}=PATH"
        )
    if not download and not cached:
        raise DataNotFoundError(f"{spec.name} is not downloaded yet; {fetch_hint(spec.name)}")
    path = _fetch_one(spec.name, spec.remote(), target.parent)
    for companion in spec.companions:
        _fetch_one(spec.name, companion, target.parent)
    return ResolvedFile(path, cached_sha256(path), spec.name, "cache" if cached else "download")


def torch_hub_path(spec: WeightsSpec) -> Path | None:
    """Where torch hub keeps ``spec``'s file (``<hub dir>/checkpoints/<file>``), for specs
    marked ``torch_hub``; ``None`` otherwise."""
    if not spec.torch_hub:
        return None
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / spec.file_name


def _fetch_one(name: str, remote: RemoteFile, folder: Path) -> Path:
    return fetch_file(
        [*_mirrors(name, remote.path), *remote.urls],
        folder / remote.path,
        sha256=remote.sha256,
        md5=remote.md5,
        size=remote.size,
        timeout=60.0,
        hint=fetch_hint(name),
    )


def resolve_weights(
    value: str,
    *,
    default: str | None = None,
    specs: Mapping[str, WeightsSpec] | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    what: str = "weights",
) -> ResolvedFile:
    """``auto`` (the ``default`` name), a name in ``specs``, a URL or a file path -> a
    :class:`ResolvedFile`. Anything else is one line listing the names ``specs`` knows."""
    text = str(value).strip()
    if text in ("", "auto"):
        if default is None:
            raise DataNotFoundError(f"{what}: no default weights for 'auto'; name a file")
        text = default
    specs = specs or {}
    if text in specs:
        return resolve_spec(specs[text], data_dir=data_dir, cache_dir=cache_dir)
    if text.startswith(RUN_PREFIX):
        return _resolve_run(text[len(RUN_PREFIX) :].strip(), what)
    if text.startswith(URL_SCHEMES):
        return _remember(("url", text, str(cache_dir)), lambda: _resolve_url(text, cache_dir))
    path = Path(text).expanduser()
    if path.is_file():
        path = path.resolve()
        return _remember(
            ("path", str(path)),
            lambda: ResolvedFile(path, cached_sha256(path), str(path), "path"),
        )
    names = ", ".join(sorted(specs)) or "none registered"
    raise DataNotFoundError(
        f"{what} {text!r} is neither a registered name ({names}), a URL nor an existing file"
    )


def _resolve_run(prefix: str, what: str) -> ResolvedFile:
    """The weights a finished ``cgnbench train-generator`` run exported (``run:<id>``, a unique
    prefix is enough), from the results store ``--results`` / ``CGNBENCH_RESULTS`` name."""
    from .settings import resolve_paths
    from .store import ResultsStore

    path = resolve_paths().results
    if not prefix or not path.is_file():
        raise DataNotFoundError(f"{what} run:{prefix}: no results store at {path} to look in")
    with ResultsStore(path) as store:
        trainings = [r for r in store.find_runs(prefix) if r.provenance.get("weights_file")]
        if len(trainings) != 1 or trainings[0].status != "complete":
            found = "none" if not trainings else ", ".join(r.run_id for r in trainings[:3])
            raise DataNotFoundError(
                f"{what} run:{prefix}: not one finished generator training with that id in "
                f"{path} (found: {found}); `cgnbench train-generator` prints the id"
            )
        record = trainings[0]
    weights = Path(record.provenance["weights_file"])
    if not weights.is_file():
        raise DataNotFoundError(f"{what} run:{record.run_id}: its weights {weights} are gone")
    digest = cached_sha256(weights)
    recorded = record.provenance.get("weights_sha256")
    if recorded and recorded != digest:
        raise ChecksumError(
            f"{what} run:{record.run_id}: {weights} changed since it was trained "
            f"(sha256 {digest[:16]}..., recorded {recorded[:16]}...)"
        )
    return ResolvedFile(weights, digest, f"run:{record.run_id}", "run")


def _resolve_url(url: str, cache_dir: str | os.PathLike | None) -> ResolvedFile:
    tail = urllib.parse.urlparse(url).path.rstrip("/").rsplit("/", 1)[-1] or "weights.bin"
    folder = (
        _cache_root(cache_dir) / "weights" / "url" / hashlib.sha256(url.encode()).hexdigest()[:16]
    )
    path = fetch_file(
        url, folder / tail, timeout=60.0, hint=f"or download {url} yourself and pass its path"
    )
    _fetch_sidecar(url, path)
    return ResolvedFile(path, cached_sha256(path), url, "url")


def _fetch_sidecar(url: str, path: Path) -> None:
    """Fetch the JSON sidecar an exported weights file may have beside it (``x.pth`` ->
    ``x.json``: architecture and settings), when the server has one; none is fine."""
    sidecar = path.with_suffix(".json")
    parsed = urllib.parse.urlparse(url)
    stem, dot, _ = parsed.path.rpartition(".")
    if sidecar.exists() or path.suffix == ".json" or not dot:
        return
    with contextlib.suppress(DataNotFoundError, ChecksumError):
        fetch_file(parsed._replace(path=stem + ".json").geturl(), sidecar, timeout=60.0)


# --- datasets -----------------------------------------------------------------------------------


def dataset_folder(spec: DatasetSpec, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``spec`` is (or will be) in the cache: the release's top folder after extraction."""
    base = _cache_root(cache_dir) / spec.cache_subdir
    return base / spec.extracts_to if spec.extracts_to else base


def _complete(spec: DatasetSpec, folder: Path) -> bool:
    if spec.is_complete is not None:
        return folder.is_dir() and spec.is_complete(folder)
    if spec.extract:
        return folder.is_dir() and any(folder.iterdir())
    return all((folder / f.path).is_file() for f in spec.files)


def local_dataset(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> Path | None:
    """A complete copy under ``--data-dir`` (the spec's ``local`` folder names), or ``None``."""
    root = _data_root(data_dir)
    for rel in spec.local if root is not None else ():
        candidate = root / rel  # type: ignore[operator]
        if _complete(spec, candidate):
            return candidate
    return None


def resolve_dataset(
    spec: DatasetSpec,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    search_local: bool = True,
    on_file: Callable[[str], None] | None = None,
) -> Path:
    """The folder holding ``spec``: a ``--data-dir`` copy (unless ``search_local`` is off),
    else the cache, else downloaded (files verified; archives extracted safely and deleted,
    their sha256 kept in ``SHA256SUMS`` beside them). A folder named by the spec's ``env``
    variable comes first and must be complete."""
    given = os.environ.get(spec.env, "").strip() if spec.env else ""
    if given:
        folder = Path(given).expanduser()
        if not _complete(spec, folder):
            raise DataNotFoundError(
                f"{spec.env}={given} does not hold {spec.name}: {spec.how_to_obtain}".rstrip(": ")
            )
        return folder
    local = local_dataset(spec, data_dir) if search_local else None
    if local is not None:
        return local
    folder = dataset_folder(spec, cache_dir)
    if _complete(spec, folder):
        return folder
    if not spec.downloadable:
        raise DataNotFoundError(
            f"{spec.name} cannot be downloaded by cgnbench. {spec.how_to_obtain}".strip()
        )
    if not download:
        raise DataNotFoundError(f"{spec.name} is not downloaded yet; {fetch_hint(spec.name)}")
    base = _cache_root(cache_dir) / spec.cache_subdir
    for remote in spec.files:
        if on_file is not None:
            on_file(remote.path)
        path = _fetch_one(spec.name, remote, base)
        if spec.extract:
            digest = cached_sha256(path)
            safe_extract(path, base)
            with open(base / "SHA256SUMS", "a") as sums:
                sums.write(f"{digest}  {remote.path}\n")
            path.unlink()
    if not _complete(spec, folder):
        raise DataNotFoundError(f"{spec.name}: the downloaded files did not give {folder}")
    return folder


def iter_files(folder: Path) -> Iterable[Path]:
    """Files under ``folder`` (for ``cgnbench fetch --list``), lock and partial files aside."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith((".lock", ".part")):
            yield path
