"""A small asyncio HTTP/1.1 keep-alive client for load tests on loopback.

Written for the benchmarks so that the load generator costs little CPU on the same 2-core
machine as the server: one persistent connection per virtual user, no TLS, bounded by the
caller's time and request budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    body: bytes
    elapsed_ms: float

    def json(self) -> dict:
        return json.loads(self.body) if self.body else {}


@dataclass
class Connection:
    host: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = None

    async def request(self, method: str, path: str, payload: dict | None = None) -> Reply:
        body = json.dumps(payload).encode() if payload is not None else b""
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
        ]
        if payload is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        for attempt in range(2):  # the server may close an idle keep-alive connection
            if self._writer is None:
                await self._open()
            started = time.perf_counter()
            try:
                self._writer.write(raw)
                await self._writer.drain()
                status, response_body, keep = await self._read_response()
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
                continue
            elapsed = (time.perf_counter() - started) * 1000
            if not keep:
                await self.close()
            return Reply(status, response_body, elapsed)
        raise ConnectionError("unreachable")

    async def _read_response(self) -> tuple[int, bytes, bool]:
        assert self._reader is not None
        header_block = await self._reader.readuntil(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = bytearray()
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")
                    break
                body += await self._reader.readexactly(size)
                await self._reader.readexactly(2)
        else:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        keep = headers.get("connection", "").lower() != "close"
        return status, bytes(body), keep


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 2)


# --- A blocking client: requests sessions in threads ---------------------------------------
# The kind of client Label Studio's numbers were measured with (one requests.Session per
# virtual annotator, each in its own thread); bench/queue.py uses it for both flows.


@dataclass
class SessionClient:
    """One annotator's keep-alive HTTP session against the API, with its token."""

    base_url: str
    token: str
    session: object = None

    def __post_init__(self) -> None:
        import requests

        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        )

    def post(self, path: str, payload: dict | None = None) -> Reply:
        started = time.perf_counter()
        response = self.session.post(self.base_url + path, json=payload, timeout=30)
        body = response.content
        return Reply(response.status_code, body, (time.perf_counter() - started) * 1000)

    def close(self) -> None:
        self.session.close()
