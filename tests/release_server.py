"""A real HTTP server on 127.0.0.1 serving release files the way their hosts do, for the
download tests: byte ranges (206 / 416), 404s, throttled transfers a test can kill mid-way,
and Google Drive's confirmation page for large files (an HTML form with hidden fields)."""

from __future__ import annotations

import html
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Served:
    data: bytes
    content_type: str = "application/octet-stream"
    delay_per_chunk: float = 0.0  # seconds between 4 KiB chunks (a slow transfer)
    ranges: bool = True  # False: a server that ignores Range and sends everything (200)


@dataclass
class Request:
    path: str
    range: str | None
    status: int = 0
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


@dataclass
class ReleaseServer:
    """``add(path, data)`` serves ``data`` at ``url(path)``; ``add_drive(file_id, data)``
    serves it behind a Drive-style confirmation page at ``drive_url(file_id)``. ``log``
    holds every request (path, Range header, status, body bytes sent) in the order they
    arrived; reading it waits for the ones still being answered, because a client may have
    read a whole body (and sent its next request) before the handler thread finished."""

    files: dict[str, Served] = field(default_factory=dict)
    drive: dict[str, bytes] = field(default_factory=dict)
    _arrived: list[Request] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def drive_url(self, file_id: str) -> str:
        return self.url(f"uc?export=download&id={file_id}")

    def add(self, path: str, data: bytes, **kw) -> str:
        self.files["/" + path.lstrip("/")] = Served(data, **kw)
        return self.url(path)

    def add_drive(self, file_id: str, data: bytes) -> str:
        self.drive[file_id] = data
        return self.drive_url(file_id)

    @property
    def log(self) -> list[Request]:
        with self._lock:
            arrived = list(self._arrived)
        for request in arrived:
            if not request.done.wait(timeout=10):
                raise TimeoutError(f"the release server is still answering {request.path}")
        return arrived

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path.split("?")[0] == "/" + path.lstrip("/")]

    def start(self) -> ReleaseServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server, self.port = server, server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def arrived(self, path: str, range_header: str | None) -> Request:
        request = Request(path, range_header)
        with self._lock:
            self._arrived.append(request)
        return request


_CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
</head><body><p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}">
<input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="0f0e-test-uuid">
</form></body></html>"""


def _handler(server: ReleaseServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self.request_record = server.arrived(self.path, self.headers.get("Range"))
            try:
                self._answer()
            finally:
                self.request_record.done.set()

        def _answer(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            if parsed.path == "/uc" and query.get("id") in server.drive:
                action = html.escape(server.url("download"))
                page = _CONFIRM_PAGE.format(action=action, file_id=html.escape(query["id"]))
                self._send(Served(page.encode(), "text/html; charset=utf-8"))
                return
            if parsed.path == "/download" and query.get("id") in server.drive:
                if query.get("confirm") != "t" or "uuid" not in query:
                    self._status(403)
                    return
                self._send(Served(server.drive[query["id"]]))
                return
            served = server.files.get(parsed.path)
            if served is None:
                self._status(404)
                return
            self._send(served)

        def _status(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.request_record.status = code

        def _send(self, served: Served) -> None:
            data, start, status = served.data, 0, 200
            wanted = self.headers.get("Range")
            match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
            if match and served.ranges:
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.request_record.status = 416
                    return
                status = 206
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Type", served.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes" if served.ranges else "none")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            self.request_record.status = status
            sent = 0
            try:
                for i in range(0, len(body), 4096):
                    self.wfile.write(body[i : i + 4096])
                    self.wfile.flush()
                    sent += len(body[i : i + 4096])
                    if served.delay_per_chunk:
                        time.sleep(served.delay_per_chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed transfer)
            finally:
                self.request_record.sent = sent

    return Handler
