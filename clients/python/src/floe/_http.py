"""The client's HTTP layer over the standard library (`urllib`): one `Transport` per
client, JSON in and out, error answers turned into `FloeError`s, and writes made safe to
retry.

Every write (POST, PUT, DELETE) carries a fresh `Idempotency-Key` (a UUIDv7, which floe
requires) and is sent again under the same key when no answer arrived or floe says the
first attempt is still running: the server applies it once and answers the retry with the
first attempt's outcome. This is what the `floe` CLI does (cli/src/client.rs).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import FloeConnectionError, FloeError, error_for

DEFAULT_URL = "http://127.0.0.1:8181"
# Attempts of a write whose answer did not arrive (or whose first attempt still runs).
WRITE_ATTEMPTS_MAX = 3
RETRY_PAUSE_S = 0.2
# The default deadline of one request; streams that follow a run have none.
REQUEST_TIMEOUT_S = 300.0
# How much of an uploaded file is read into memory at a time.
UPLOAD_CHUNK_BYTES = 1 << 20
# floe's error types that mean "your earlier attempt with this key is still running".
IN_FLIGHT_TYPES = ("IdempotencyInFlight", "ServiceUnavailableException")


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Python 3.11's
    `uuid` module has no v7, and floe refuses an Idempotency-Key of another version."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    rand_a = (rand >> 62) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = ((ms & ((1 << 48) - 1)) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def segment(text: str) -> str:
    """`text` as one URL path segment: everything but RFC 3986's unreserved characters is
    percent-encoded, so `feature/x` and `main*2026-01-01T00:00:00Z` stay one segment."""
    return urllib.parse.quote(text, safe="-._~")


@dataclass(frozen=True)
class Answer:
    """A successful answer: its status, headers and body."""

    status: int
    headers: Mapping[str, str]
    data: bytes

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.data) if self.data.strip() else None


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: bytes in memory, or a local file read when sent."""

    name: str
    content_type: str
    data: bytes | None = None
    path: str | None = None
    filename: str | None = None

    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None, "a part holds bytes or names a file"
        return os.stat(self.path).st_size


class Multipart:
    """A `multipart/form-data` body that streams its files and can be produced again for a
    retry (the same bytes under the same Idempotency-Key)."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.boundary = f"floe-{secrets.token_hex(16)}"
        self.parts = list(parts)
        self.heads = [self._head(p) for p in self.parts]
        self.tail = f"--{self.boundary}--\r\n".encode()
        self.length = (
            sum(len(h) + p.size() + 2 for h, p in zip(self.heads, self.parts)) + len(self.tail)
        )

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _head(self, part: Part) -> bytes:
        disposition = f'form-data; name="{part.name}"'
        if part.filename is not None:
            # Quotes and line breaks cannot travel in the header; floe only reads the
            # name's extension (.parquet or .csv) and shows the name back.
            safe = "".join("_" if c in '"\r\n' else c for c in part.filename)
            disposition += f'; filename="{safe}"'
        return (
            f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {part.content_type}\r\n\r\n"
        ).encode()

    def chunks(self) -> Iterator[bytes]:
        """The body, from its start (each call starts again)."""
        for head, part in zip(self.heads, self.parts):
            yield head
            if part.data is not None:
                yield part.data
            else:
                assert part.path is not None
                with open(part.path, "rb") as f:
                    while chunk := f.read(UPLOAD_CHUNK_BYTES):
                        yield chunk
            yield b"\r\n"
        yield self.tail


class Transport:
    """Requests to one floe server (`base_url`), with an optional bearer token."""

    def __init__(self, base_url: str, *, token: str | None, timeout_s: float | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        """The URL of `path` with the query pairs whose value is not None."""
        pairs = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if not pairs:
            return self.base_url + path
        return f"{self.base_url}{path}?{urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)}"

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        from . import __version__

        out = {"User-Agent": f"floe-client/{__version__}", "Accept": "application/json"}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        out.update(extra or {})
        return out

    def get(self, path: str, query: Mapping[str, Any] | None = None) -> Answer:
        """A read; its answer."""
        request = urllib.request.Request(self.url(path, query), headers=self.headers())
        with self._open(request, self.timeout_s) as response:
            return _answer(response, self)

    def write(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        json_body: Any = None,
        multipart: Multipart | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """A write under a fresh Idempotency-Key, sent again under the same key while no
        answer arrived or floe says the first attempt is still running."""
        key = uuid7()
        url = self.url(path, query)
        last: FloeError | None = None
        for _ in range(WRITE_ATTEMPTS_MAX):
            extra = {"Idempotency-Key": key, **(headers or {})}
            data: Any = None
            if multipart is not None:
                extra["Content-Type"] = multipart.content_type
                extra["Content-Length"] = str(multipart.length)
                data = multipart.chunks()
            elif json_body is not None:
                extra["Content-Type"] = "application/json"
                data = json.dumps(json_body).encode()
            request = urllib.request.Request(
                url, data=data, method=method, headers=self.headers(extra)
            )
            try:
                with self._open(request, self.timeout_s) as response:
                    return _answer(response, self)
            except FloeConnectionError as e:
                last = e
            except FloeError as e:
                if e.error_type not in IN_FLIGHT_TYPES:
                    raise
                last = e
            time.sleep(RETRY_PAUSE_S)
        assert last is not None, "every attempt ended in an error"
        raise last

    def stream(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        json_body: Any = None,
        accept: str | None = None,
        timeout_s: float | None,
    ) -> http.client.HTTPResponse:
        """A request whose answer is read as it comes (a query's rows, a run's log). Not
        retried: it changes nothing. The caller closes the response."""
        extra: dict[str, str] = {}
        data = None
        if accept is not None:
            extra["Accept"] = accept
        if json_body is not None:
            extra["Content-Type"] = "application/json"
            data = json.dumps(json_body).encode()
        request = urllib.request.Request(
            self.url(path, query), data=data, method=method, headers=self.headers(extra)
        )
        response: http.client.HTTPResponse = self._open(request, timeout_s)
        return response

    def _open(self, request: urllib.request.Request, timeout_s: float | None) -> Any:
        try:
            return urllib.request.urlopen(request, timeout=timeout_s)
        except urllib.error.HTTPError as e:
            raise _error_answer(e) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise self.unreachable(e) from e

    def unreachable(self, e: BaseException) -> FloeConnectionError:
        reason = getattr(e, "reason", None) or e
        if isinstance(e, (socket.timeout, TimeoutError)) or isinstance(reason, TimeoutError):
            return FloeConnectionError(
                f"no answer from the floe server at {self.base_url} in time ({reason})"
            )
        return FloeConnectionError(
            f"cannot reach the floe server at {self.base_url} ({reason}); start it with "
            "`floe serve`, or pass url= (or set FLOE_URL)"
        )


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _answer(response: Any, transport: Transport) -> Answer:
    try:
        data = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise transport.unreachable(e) from e
    return Answer(response.status, response.headers, data)


def _error_answer(e: urllib.error.HTTPError) -> FloeError:
    try:
        text = e.read().decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException):
        text = ""
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    return error_for(e.code, body, text)

