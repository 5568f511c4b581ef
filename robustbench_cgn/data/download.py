"""Downloads that survive the real world: resumable, locked, verified, atomically renamed.

:func:`fetch_file` fetches one file from a list of URLs (primary first, then mirrors):

* the bytes go to ``<dest>.part``; a ``.part`` left by a killed transfer is continued with an
  HTTP ``Range`` request (a server that answers 200 instead of 206 restarts it);
* a lock file ``<dest>.lock`` (:mod:`filelock`) makes a second process wanting the same file
  wait for the first and then use its result instead of downloading again;
* the finished ``.part`` is checked against ``sha256``/``md5`` and only then renamed to
  ``dest``; a file that fails its checksum is set aside as ``<dest>.bad`` (never used, never
  silently deleted) and the next mirror is tried;
* an HTML page where a file was expected is followed when it is a Google Drive confirmation
  page ("can't scan this file for viruses": a form with hidden fields) and refused otherwise;
* ``CGNBENCH_OFFLINE=1`` (:func:`offline`) forbids the network: a missing file is one
  :class:`~robustbench_cgn.errors.DataNotFoundError` line naming the file, its URL and ``hint``
  (the ``cgnbench fetch`` command that gets it).

Every failure a user can fix is a one-line :class:`~robustbench_cgn.errors.CGNBenchError`.
Checksums live in :mod:`.digests`, archive extraction in :mod:`.archives` (both re-exported).
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

from robustbench_cgn.errors import ChecksumError, DataNotFoundError

from .archives import UnsafeArchiveError, safe_extract
from .digests import cached_sha256, md5_file, sha256_file, verify_file

__all__ = [
    "OFFLINE_ENV",
    "UnsafeArchiveError",
    "cached_sha256",
    "drive_url",
    "go_offline",
    "fetch_file",
    "md5_file",
    "offline",
    "safe_extract",
    "sha256_file",
    "verify_file",
]

_CHUNK = 1 << 20
OFFLINE_ENV = "CGNBENCH_OFFLINE"
_USER_AGENT = "cgnbench (+https://pypi.org/project/cgnbench)"
_DRIVE = "https://drive.google.com/uc?export=download&id="
_MAX_PAGE = 1 << 20  # an HTML page bigger than this is not a confirmation page


def offline() -> bool:
    """Whether ``CGNBENCH_OFFLINE`` forbids downloads (``1``/``true``/``yes``)."""
    from robustbench_cgn.settings import env_flag

    return env_flag(OFFLINE_ENV)


def go_offline() -> None:
    """Forbid downloads for the rest of this process and its children (``--offline``):
    cgnbench's own (:data:`OFFLINE_ENV`) and the Hugging Face hub's (``HF_HUB_OFFLINE``)."""
    os.environ[OFFLINE_ENV] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"


def drive_url(file_id: str) -> str:
    """The download URL of a Google Drive file id (specs may also write ``gdrive:<id>``)."""
    return _DRIVE + urllib.parse.quote(file_id, safe="-_")


def _expand(url: str) -> str:
    return drive_url(url[len("gdrive:") :]) if url.startswith("gdrive:") else url


def fetch_file(
    url: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    timeout: float = 30.0,
    hint: str = "",
    progress: bool | None = None,
) -> Path:
    """Download ``url`` (or the first mirror that works) to ``dest`` unless a verified copy is
    already there; return ``dest``. See the module docstring for resume, lock and checksums.

    ``size`` (bytes, optional) lets a stale oversized ``.part`` be recognised. ``progress``:
    show a progress bar (default: when stderr is a terminal).

    Raises :class:`DataNotFoundError` when no URL could be downloaded (offline, HTTP error,
    timeout...), naming the URLs that failed, the file and ``hint``; :class:`ChecksumError`
    when every download completed with the wrong checksum (kept as ``<dest>.bad``).
    """
    dest = Path(dest)
    urls = [_expand(u) for u in ([url] if isinstance(url, str) else list(url))]
    if _present(dest, sha256, md5):
        return dest
    if offline():
        raise DataNotFoundError(
            f"{dest.name} is not at {dest} and downloads are off ({OFFLINE_ENV}=1): "
            f"it comes from {' or '.join(urls)}" + (f"; {hint}" if hint else "")
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataNotFoundError(f"cannot create {dest.parent} to download {dest.name}: {e}") from e

    with _locked(dest, progress):
        if _present(dest, sha256, md5):  # another process fetched it while we waited
            return dest
        failures: list[str] = []
        bad_sums: list[str] = []
        part = dest.with_name(dest.name + ".part")
        for u in urls:
            try:
                _download(u, part, timeout=timeout, size=size, progress=progress)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                failures.append(f"{u} ({_reason(e)})")
                continue
            try:
                verify_file(part, sha256=sha256, md5=md5)
            except ChecksumError:
                aside = _set_aside(part, dest)
                bad_sums.append(f"{u} (kept as {aside})")
                continue  # a broken mirror (or a captive portal page): try the next one
            os.replace(part, dest)
            return dest

    if bad_sums:
        expected = f"sha256 {sha256}" if sha256 else f"md5 {md5}"
        raise ChecksumError(
            f"downloaded {dest.name} but its checksum is wrong (expected {expected}): "
            f"{'; '.join(bad_sums)}" + (f"; {hint}" if hint else "")
        )
    msg = (
        f"could not download {dest.name}: tried {'; '.join(failures)}. "
        f"Download it elsewhere and place it at {dest}"
    )
    raise DataNotFoundError(msg + (f" ({hint})" if hint else ""))


def _present(dest: Path, sha256: str | None, md5: str | None) -> bool:
    """``dest`` exists and matches; a mismatching ``dest`` is set aside (it is never used)."""
    if not dest.is_file():
        return False
    try:
        verify_file(dest, sha256=sha256, md5=md5)
        return True
    except ChecksumError:
        _set_aside(dest, dest)
        return False


def _set_aside(path: Path, dest: Path) -> Path:
    aside = dest.with_name(dest.name + ".bad")
    os.replace(path, aside)
    return aside


@contextmanager
def _locked(dest: Path, progress: bool | None):
    from filelock import FileLock, Timeout

    lock = FileLock(str(dest) + ".lock")
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        if _show(progress):
            print(f"waiting for another process downloading {dest.name} ...", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _show(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _open(url: str, timeout: float, start: int):
    headers = {"User-Agent": _USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _download(
    url: str, part: Path, *, timeout: float, size: int | None, progress: bool | None
) -> None:
    """Stream ``url`` into ``part``, continuing what is already there when the server can."""
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    try:
        resp = _open(url, timeout, have)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the .part is complete (or stale)
            return
        raise
    with resp:
        resp = _past_confirmation(resp, url, timeout, have, part.name)
        resumed = have > 0 and resp.status == 206 and _range_start(resp) == have
        if not resumed:
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        written = have
        with open(part, "ab" if resumed else "wb") as out, _bar(part, total, have, progress) as bar:
            read = getattr(resp, "read1", resp.read)  # what has arrived: the .part grows
            while block := read(_CHUNK):
                out.write(block)
                written += len(block)
                bar(len(block))
        if total is not None and written < total:
            raise OSError(f"transfer ended at {written} of {total} bytes; run again to resume")


def _range_start(resp) -> int | None:
    match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


class _FormParser(HTMLParser):
    """Collects the first form's action and its inputs, and links that carry ``confirm=``."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.confirm_links: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action, self._in_form = attrs.get("action", ""), True
        elif tag == "input" and self._in_form and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value", "")
        elif tag == "a" and "confirm=" in attrs.get("href", ""):
            self.confirm_links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def _past_confirmation(resp, url: str, timeout: float, start: int, name: str):
    """The response itself, or, for an HTML page with a download form (Google Drive's
    confirmation for large files), the response of submitting it."""
    kind = resp.headers.get("Content-Type", "")
    if not kind.startswith("text/html") or name.removesuffix(".part").endswith((".html", ".htm")):
        return resp
    page = resp.read(_MAX_PAGE).decode("utf-8", "replace")
    parser = _FormParser()
    parser.feed(page)
    if parser.action is not None and "confirm" in parser.fields:
        action = urllib.parse.urljoin(url, parser.action)
        target = action + ("&" if "?" in action else "?") + urllib.parse.urlencode(parser.fields)
    elif parser.confirm_links:
        target = urllib.parse.urljoin(url, parser.confirm_links[0].replace("&amp;", "&"))
    else:
        raise ValueError("got an HTML page instead of the file (a login, quota or error page)")
    resp.close()
    return _open(target, timeout, start)


@contextmanager
def _bar(part: Path, total: int | None, done: int, progress: bool | None):
    if not _show(progress):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bars:
        task = bars.add_task(part.name.removesuffix(".part"), total=total, completed=done)
        yield lambda n: bars.advance(task, n)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(e, http.client.IncompleteRead):
        return "the connection closed mid-transfer; run again to resume"
    return str(e) or type(e).__name__
