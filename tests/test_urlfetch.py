"""labelling.urlfetch: the SSRF-safe downloader behind "import audio from a URL".

No test touches the network beyond 127.0.0.1. Names are resolved by an injected fake
resolver (an unknown name fails the test instead of reaching DNS), and every TCP connection
goes through the `connections` spy, which records it and fails the test for any address other
than 127.0.0.1. Refusals are therefore proven to happen before any connect.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labelling import urlfetch
from labelling.urlfetch import (
    DEFAULT_PORTS,
    FetchFailed,
    FetchResult,
    UnsafeURL,
    check_url,
    fetch_to_file,
    is_public_address,
)

WAV_BYTES = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4
BIG_BODY = b"x" * 10_000

# --------------------------------------------------------------------------------------------
# Fixtures: a fake resolver, a connection spy, a real local HTTP server
# --------------------------------------------------------------------------------------------


@dataclass
class FakeResolver:
    """Answers from a fixed table; a name not in it fails the test rather than hit DNS."""

    table: dict[str, list[str]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise AssertionError(f"test resolver asked for an unexpected name {host!r}")
        return list(self.table[host])


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (ip, port) the fetcher connects to; any non-loopback connect fails the test."""
    made: list[tuple[str, int]] = []
    real_connect = urlfetch._connect_socket

    def spy(ip: str, port: int, timeout: float) -> socket.socket:
        made.append((ip, port))
        if ip != "127.0.0.1":
            raise AssertionError(f"the fetcher tried to connect to {ip}:{port}")
        return real_connect(ip, port, timeout)

    monkeypatch.setattr(urlfetch, "_connect_socket", spy)
    return made


Route = tuple[int, list[tuple[str, str]], bytes]


class _Handler(BaseHTTPRequestHandler):
    server: _LocalServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        route = self.server.routes.get(self.path)
        if route is None:
            status, headers, body = 404, [], b"not here"
        elif callable(route):
            status, headers, body = route()
        else:
            status, headers, body = route
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route | Callable[[], Route]] = {}
        self.requests: list[tuple[str, str]] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        # The client hangs up mid-body on purpose in the size-limit tests.
        pass


@pytest.fixture
def server() -> Iterator[_LocalServer]:
    srv = _LocalServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture
def other_listener() -> Iterator[socket.socket]:
    """A second loopback port that nothing may connect to (a stand-in for Redis, say)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_never_connected(listener: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        listener.accept()


@dataclass
class LocalFetch:
    """fetch_to_file under the test policy: only 127.0.0.1 on the server's port is allowed."""

    server: _LocalServer
    resolver: FakeResolver
    allowed_ports: frozenset[int]

    def base(self, host: str = "audio.test") -> str:
        return f"http://{host}:{self.server.port}"

    def allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return str(ip) == "127.0.0.1" and port == self.server.port

    def __call__(self, url: str, dest: io.BytesIO, **kwargs: object) -> FetchResult:
        kwargs.setdefault("max_bytes", 1_000_000)
        kwargs.setdefault("timeout_s", 5.0)
        return fetch_to_file(
            url,
            dest,
            allowed_ports=self.allowed_ports,
            resolve=self.resolver,
            address_allowed=self.allowed,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def local_fetch(
    server: _LocalServer, other_listener: socket.socket, connections: list[tuple[str, int]]
) -> LocalFetch:
    resolver = FakeResolver(
        {
            "audio.test": ["127.0.0.1"],
            "internal.test": ["10.0.0.5"],
        }
    )
    ports = DEFAULT_PORTS | {server.port, other_listener.getsockname()[1]}
    return LocalFetch(server, resolver, frozenset(ports))


# --------------------------------------------------------------------------------------------
# is_public_address
# --------------------------------------------------------------------------------------------

NOT_PUBLIC = [
    # loopback
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    # private (RFC 1918) and unique-local
    "10.0.0.5",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "fc00::1",
    "fd12:3456:789a::1",
    # link-local
    "169.254.1.1",
    "fe80::1",
    # cloud metadata and carrier-grade NAT
    "169.254.169.254",
    "fd00:ec2::254",
    "100.100.100.200",
    "100.64.0.1",
    "100.127.255.255",
    # multicast, reserved, broadcast
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    "240.0.0.1",
    "255.255.255.255",
    # unspecified and "this network"
    "0.0.0.0",  # noqa: S104 - an address under test; nothing binds to it
    "0.1.2.3",
    "::",
    # documentation, benchmarking, IETF, deprecated site-local
    "192.0.2.1",
    "198.18.0.1",
    "203.0.113.9",
    "192.0.0.192",
    "2001:db8::1",
    "fec0::1",
    "100::1",
    # IPv4-mapped, IPv4-compatible and NAT64 forms of non-public IPv4
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::10.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    # 6to4 embedding non-public IPv4
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "2002:a9fe:a9fe::1",
    # Teredo (client 192.0.2.45), and Teredo in general
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below 100.64.0.0/10
    "100.128.0.1",  # just above it
    "172.32.0.1",  # just above 172.16.0.0/12
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


# --------------------------------------------------------------------------------------------
# check_url: scheme, userinfo, port, odd spellings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.org/clips/a.wav",
        "https://cdn.example.org/clips/a.wav?sig=abc#frag",
        "HTTPS://CDN.Example.org:8443/a.wav",
        "http://cdn.example.org:8080/a.wav",
        "http://93.184.216.34/a.wav",
        "http://[2606:4700:4700::1111]/a.wav",
        "http://bücher.example/a.wav",
    ],
)
def test_well_formed_http_urls_pass_the_syntax_check(url: str) -> None:
    assert check_url(url).scheme.lower() in {"http", "https"}


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.org/a.wav",
        "gopher://example.org:70/_GET",
        "dict://example.org:2628/",
        "javascript:alert(1)",
        "//example.org/a.wav",
        "example.org/a.wav",
    ],
)
def test_schemes_other_than_http_and_https_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="Only http and https"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://user@example.org/a.wav",
        "http://user:secret@example.org/a.wav",
        "http://example.org@127.0.0.1/",
        "http://:@example.org/",
    ],
)
def test_userinfo_is_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="user name or password"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org\\@127.0.0.1/",
        "http://example.org/a.wav\r\nX-Injected: 1",
        "http://exa mple.org/",
        "http://example.org/\x00",
    ],
)
def test_backslashes_spaces_and_control_characters_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="control characters or backslashes"):
        check_url(url)


@pytest.mark.parametrize(
    "url", ["http://example.org:22/", "http://example.org:6379/", "https://example.org:0/"]
)
def test_ports_outside_the_allowed_set_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match=r"Port \d+ is not allowed"):
        check_url(url)


def test_an_invalid_port_is_refused() -> None:
    with pytest.raises(UnsafeURL, match="port"):
        check_url("http://example.org:99999/")


def test_the_allowed_ports_are_configurable() -> None:
    check_url("http://example.org:9000/", allowed_ports=frozenset({9000}))
    with pytest.raises(UnsafeURL, match="Port 80 is not allowed"):
        check_url("http://example.org/", allowed_ports=frozenset({9000}))


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://00000177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://0x7f000001/",
        "http://0X7F.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.0.1/",
        "http://127.0.0.01/",
        "http://127.0.0.1./",
        "http://256.0.0.1/",
        "http://0/",
        "http://example.0x10/",
        "http://\uff10x7f.1/",  # full-width zero: IDNA folds it to "0x7f.1"
    ],
)
def test_unusual_ipv4_spellings_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="unusual spelling of an IPv4 address"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    ["http:///a.wav", "http://[::1/", "http://[fe80::1%25eth0]/", "http://a..b/", "http://-a.org/"],
)
def test_malformed_hosts_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url)


# --------------------------------------------------------------------------------------------
# Refusals during fetch_to_file, before any connection
# --------------------------------------------------------------------------------------------


def refused_fetch(url: str, resolver: FakeResolver | None = None) -> UnsafeURL:
    """fetch_to_file under the production address policy; returns the refusal."""
    dest = io.BytesIO()
    with pytest.raises(UnsafeURL) as caught:
        fetch_to_file(url, dest, max_bytes=1000, resolve=resolver or FakeResolver({}))
    assert dest.getvalue() == b""
    return caught.value


@pytest.mark.parametrize(
    ("host", "answers", "reason"),
    [
        ("internal.test", ["10.0.0.5"], "private"),
        ("localhost.test", ["127.0.0.1"], "loopback"),
        ("meta.test", ["169.254.169.254"], "cloud metadata"),
        ("alibaba.test", ["100.100.100.200"], "cloud metadata"),
        ("cgnat.test", ["100.64.12.1"], "carrier-grade NAT"),
        ("mapped.test", ["::ffff:127.0.0.1"], "IPv4-mapped form of a loopback"),
        ("ula.test", ["fd00:ec2::254"], "cloud metadata"),
        ("v6local.test", ["fe80::1"], "link-local"),
        ("zero.test", ["0.0.0.0"], "unspecified"),  # noqa: S104 - resolver answer under test
        ("sixtofour.test", ["2002:a00:1::1"], "6to4 address embedding a private"),
    ],
)
def test_a_name_resolving_to_a_non_public_address_is_refused_before_connecting(
    host: str, answers: list[str], reason: str, connections: list[tuple[str, int]]
) -> None:
    resolver = FakeResolver({host: answers})
    refusal = refused_fetch(f"https://{host}/a.wav", resolver)
    assert reason in str(refusal)
    assert host in str(refusal)
    assert resolver.calls == [(host, 443)]
    assert connections == []


@pytest.mark.parametrize("answers", [["93.184.216.34", "10.0.0.5"], ["10.0.0.5", "93.184.216.34"]])
def test_a_name_with_one_public_and_one_private_address_is_refused(
    answers: list[str], connections: list[tuple[str, int]]
) -> None:
    refusal = refused_fetch("http://mixed.test/a.wav", FakeResolver({"mixed.test": answers}))
    assert "10.0.0.5" in str(refusal)
    assert "93.184.216.34" not in str(refusal)
    assert connections == []


def test_a_refusal_names_only_the_offending_address(connections: list[tuple[str, int]]) -> None:
    resolver = FakeResolver({"lan.test": ["10.0.0.5", "192.168.7.7", "172.16.3.3"]})
    message = str(refused_fetch("http://lan.test/", resolver))
    assert "10.0.0.5" in message
    assert "192.168.7.7" not in message
    assert "172.16.3.3" not in message
    assert message.endswith(".")
    assert connections == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://127.0.0.1/", "loopback"),
        ("http://10.1.2.3:8080/", "private"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://[::ffff:7f00:1]/", "IPv4-mapped"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://\uff11\uff12\uff17.0.0.1/", "loopback"),  # full-width digits fold to 127
    ],
)
def test_literal_non_public_addresses_are_refused_without_resolving_or_connecting(
    url: str, reason: str, connections: list[tuple[str, int]]
) -> None:
    resolver = FakeResolver({})
    assert reason in str(refused_fetch(url, resolver))
    assert resolver.calls == []
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "http://user@example.org/",
        "http://example.org:6379/",
    ],
)
def test_syntax_refusals_happen_before_resolving_or_connecting(
    url: str, connections: list[tuple[str, int]]
) -> None:
    resolver = FakeResolver({})
    refused_fetch(url, resolver)
    assert resolver.calls == []
    assert connections == []


def test_a_resolver_failure_is_a_fetch_failure(connections: list[tuple[str, int]]) -> None:
    def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchFailed, match="Could not resolve"):
        fetch_to_file("http://nowhere.test/", io.BytesIO(), max_bytes=10, resolve=failing)
    with pytest.raises(FetchFailed, match="did not resolve"):
        fetch_to_file(
            "http://empty.test/",
            io.BytesIO(),
            max_bytes=10,
            resolve=FakeResolver({"empty.test": []}),
        )
    assert connections == []


def test_the_default_resolver_returns_each_address_once() -> None:
    # A numeric host: getaddrinfo answers without asking DNS.
    assert urlfetch._default_resolve("127.0.0.1", 80) == ["127.0.0.1"]


# --------------------------------------------------------------------------------------------
# Downloads from a real local server under the test policy
# --------------------------------------------------------------------------------------------


def test_a_download_writes_the_exact_bytes_and_reports_the_result(
    local_fetch: LocalFetch, connections: list[tuple[str, int]]
) -> None:
    local_fetch.server.routes["/clips/happy%20one.wav"] = (
        200,
        [("Content-Type", "audio/wav; rate=16000"), ("Content-Length", str(len(WAV_BYTES)))],
        WAV_BYTES,
    )
    url = f"{local_fetch.base()}/clips/happy%20one.wav"
    dest = io.BytesIO()

    result = local_fetch(url, dest)

    assert dest.getvalue() == WAV_BYTES
    assert result == FetchResult(
        final_url=url,
        status=200,
        content_type="audio/wav",
        bytes_written=len(WAV_BYTES),
        filename="happy_one.wav",
    )
    # Connected to the checked address while sending the original Host header.
    assert connections == [("127.0.0.1", local_fetch.server.port)]
    assert local_fetch.server.requests == [
        ("/clips/happy%20one.wav", f"audio.test:{local_fetch.server.port}")
    ]


def test_the_name_is_resolved_once_and_the_checked_address_is_used(
    local_fetch: LocalFetch, connections: list[tuple[str, int]]
) -> None:
    # A rebinding resolver: the first answer passes the check, later ones point inside.
    answers = iter([["127.0.0.1"], ["10.0.0.5"], ["10.0.0.5"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    local_fetch.server.routes["/a.wav"] = (200, [], WAV_BYTES)
    dest = io.BytesIO()
    fetch_to_file(
        f"{local_fetch.base()}/a.wav",
        dest,
        max_bytes=1_000_000,
        allowed_ports=local_fetch.allowed_ports,
        resolve=rebinding,
        address_allowed=local_fetch.allowed,
    )
    assert calls == ["audio.test"]
    assert connections == [("127.0.0.1", local_fetch.server.port)]
    assert dest.getvalue() == WAV_BYTES


def test_the_filename_comes_from_content_disposition_and_is_sanitised(
    local_fetch: LocalFetch,
) -> None:
    local_fetch.server.routes["/download?id=7"] = (
        200,
        [("Content-Disposition", 'attachment; filename="../../etc/pass wd;.wav"')],
        WAV_BYTES,
    )
    result = local_fetch(f"{local_fetch.base()}/download?id=7", io.BytesIO())
    assert result.filename == "pass_wd_.wav"
    assert result.content_type is None


def test_an_rfc5987_filename_is_decoded_then_sanitised(local_fetch: LocalFetch) -> None:
    local_fetch.server.routes["/x"] = (
        200,
        [("Content-Disposition", "attachment; filename*=UTF-8''%C3%A9motion%20clip.wav")],
        WAV_BYTES,
    )
    assert local_fetch(f"{local_fetch.base()}/x", io.BytesIO()).filename == "_motion_clip.wav"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "download"),
        ("", "download"),
        ("..", "download"),
        ("...///", "download"),
        (".hidden.wav", "hidden.wav"),
        ("C:\\Users\\me\\clip.wav", "clip.wav"),
        ("a b$c.wav", "a_b_c.wav"),
        ("\u65e5\u672c.wav", "_.wav"),
    ],
)
def test_filenames_are_reduced_to_a_safe_basename(raw: str | None, expected: str) -> None:
    assert urlfetch._safe_filename(raw) == expected


def test_a_long_filename_is_cut_to_120_characters_keeping_its_extension() -> None:
    name = urlfetch._safe_filename("a" * 300 + ".flac")
    assert len(name) == 120
    assert name.endswith(".flac")


def test_non_ascii_paths_are_percent_encoded_and_fragments_are_not_sent(
    local_fetch: LocalFetch,
) -> None:
    local_fetch.server.routes["/clips/%C3%A9t%C3%A9%20x.wav?take=2"] = (200, [], WAV_BYTES)
    result = local_fetch(
        f"{local_fetch.base()}/clips/\u00e9t\u00e9%20x.wav?take=2#t=3", io.BytesIO()
    )
    assert result.bytes_written == len(WAV_BYTES)
    assert result.filename == "_t_x.wav"


def test_the_filename_falls_back_when_the_url_has_no_path(local_fetch: LocalFetch) -> None:
    local_fetch.server.routes["/"] = (200, [], WAV_BYTES)
    assert local_fetch(f"{local_fetch.base()}/", io.BytesIO()).filename == "download"


# --------------------------------------------------------------------------------------------
# Redirects
# --------------------------------------------------------------------------------------------


def test_a_relative_redirect_is_followed(local_fetch: LocalFetch) -> None:
    local_fetch.server.routes["/share/42"] = (302, [("Location", "../clips/x.wav")], b"")
    local_fetch.server.routes["/clips/x.wav"] = (200, [], WAV_BYTES)
    dest = io.BytesIO()
    result = local_fetch(f"{local_fetch.base()}/share/42", dest)
    assert result.final_url == f"{local_fetch.base()}/clips/x.wav"
    assert result.filename == "x.wav"
    assert dest.getvalue() == WAV_BYTES


def test_a_redirect_to_the_metadata_service_is_refused_without_connecting(
    local_fetch: LocalFetch, connections: list[tuple[str, int]]
) -> None:
    local_fetch.server.routes["/a.wav"] = (
        302,
        [("Location", "http://169.254.169.254/latest/meta-data/")],
        b"",
    )
    with pytest.raises(UnsafeURL, match="cloud metadata"):
        local_fetch(f"{local_fetch.base()}/a.wav", io.BytesIO())
    assert connections == [("127.0.0.1", local_fetch.server.port)]


def test_a_redirect_to_another_loopback_port_is_refused_without_connecting(
    local_fetch: LocalFetch, other_listener: socket.socket, connections: list[tuple[str, int]]
) -> None:
    other_port = other_listener.getsockname()[1]
    local_fetch.server.routes["/a.wav"] = (
        302,
        [("Location", f"http://127.0.0.1:{other_port}/")],
        b"",
    )
    with pytest.raises(UnsafeURL, match=f"127.0.0.1 on port {other_port}"):
        local_fetch(f"{local_fetch.base()}/a.wav", io.BytesIO())
    assert connections == [("127.0.0.1", local_fetch.server.port)]
    assert_never_connected(other_listener)


def test_a_redirect_to_a_name_resolving_to_a_private_address_is_refused(
    local_fetch: LocalFetch, connections: list[tuple[str, int]]
) -> None:
    local_fetch.server.routes["/a.wav"] = (302, [("Location", "http://internal.test/admin")], b"")
    with pytest.raises(UnsafeURL, match=r"'internal\.test' resolves to 10\.0\.0\.5"):
        local_fetch(f"{local_fetch.base()}/a.wav", io.BytesIO())
    assert local_fetch.resolver.calls == [
        ("audio.test", local_fetch.server.port),
        ("internal.test", 80),
    ]
    assert connections == [("127.0.0.1", local_fetch.server.port)]


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "gopher://audio.test/_x", "http://u:p@audio.test/", "http://0x7f.1/"],
)
def test_a_redirect_to_a_refused_url_is_refused(
    local_fetch: LocalFetch, location: str, connections: list[tuple[str, int]]
) -> None:
    local_fetch.server.routes["/a.wav"] = (301, [("Location", location)], b"")
    with pytest.raises(UnsafeURL):
        local_fetch(f"{local_fetch.base()}/a.wav", io.BytesIO())
    assert connections == [("127.0.0.1", local_fetch.server.port)]


def test_a_redirect_loop_is_a_fetch_failure(local_fetch: LocalFetch) -> None:
    local_fetch.server.routes["/loop-a"] = (302, [("Location", "/loop-b")], b"")
    local_fetch.server.routes["/loop-b"] = (307, [("Location", "/loop-a")], b"")
    with pytest.raises(FetchFailed, match="Redirect loop"):
        local_fetch(f"{local_fetch.base()}/loop-a", io.BytesIO())


def test_more_redirects_than_allowed_is_a_fetch_failure(local_fetch: LocalFetch) -> None:
    for n in range(10):
        local_fetch.server.routes[f"/hop/{n}"] = (302, [("Location", f"/hop/{n + 1}")], b"")
    with pytest.raises(FetchFailed, match=r"Too many redirects \(more than 3\)"):
        local_fetch(f"{local_fetch.base()}/hop/0", io.BytesIO(), max_redirects=3)
    assert [path for path, _host in local_fetch.server.requests] == [
        "/hop/0",
        "/hop/1",
        "/hop/2",
        "/hop/3",
    ]


def test_exactly_max_redirects_is_still_followed(local_fetch: LocalFetch) -> None:
    for n in range(3):
        local_fetch.server.routes[f"/hop/{n}"] = (308, [("Location", f"/hop/{n + 1}")], b"")
    local_fetch.server.routes["/hop/3"] = (200, [], WAV_BYTES)
    result = local_fetch(f"{local_fetch.base()}/hop/0", io.BytesIO(), max_redirects=3)
    assert result.final_url.endswith("/hop/3")


def test_a_redirect_without_location_is_a_fetch_failure(local_fetch: LocalFetch) -> None:
    local_fetch.server.routes["/a.wav"] = (302, [], b"")
    with pytest.raises(FetchFailed, match="without a Location"):
        local_fetch(f"{local_fetch.base()}/a.wav", io.BytesIO())


# --------------------------------------------------------------------------------------------
# Size limits, HTTP errors, timeouts
# --------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_fails_and_nothing_beyond_the_limit_is_written(
    local_fetch: LocalFetch,
) -> None:
    # No Content-Length: the limit is enforced while streaming.
    local_fetch.server.routes["/big"] = (200, [], BIG_BODY)
    dest = io.BytesIO()
    with pytest.raises(FetchFailed, match="larger than the limit of 4096 bytes"):
        local_fetch(f"{local_fetch.base()}/big", dest, max_bytes=4096)
    assert len(dest.getvalue()) <= 4096


def test_a_body_exactly_at_the_limit_is_accepted(local_fetch: LocalFetch) -> None:
    local_fetch.server.routes["/big"] = (200, [], BIG_BODY)
    dest = io.BytesIO()
    result = local_fetch(f"{local_fetch.base()}/big", dest, max_bytes=len(BIG_BODY))
    assert result.bytes_written == len(BIG_BODY)
    assert dest.getvalue() == BIG_BODY


def test_a_too_large_content_length_is_refused_before_reading_the_body(
    local_fetch: LocalFetch,
) -> None:
    local_fetch.server.routes["/huge"] = (200, [("Content-Length", str(10**9))], b"x" * 100)
    dest = io.BytesIO()
    with pytest.raises(FetchFailed, match="announces 1000000000 bytes"):
        local_fetch(f"{local_fetch.base()}/huge", dest, max_bytes=1000)
    assert dest.getvalue() == b""


@pytest.mark.parametrize("status", [404, 500, 304])
def test_a_non_2xx_final_answer_is_a_fetch_failure_naming_the_status(
    local_fetch: LocalFetch, status: int
) -> None:
    local_fetch.server.routes["/a.wav"] = (status, [], b"nope")
    with pytest.raises(FetchFailed, match=f"HTTP {status}"):
        local_fetch(f"{local_fetch.base()}/a.wav", io.BytesIO())


def test_a_server_that_stalls_hits_the_read_timeout(local_fetch: LocalFetch) -> None:
    def stall() -> Route:
        time.sleep(1.0)
        return 200, [], b""

    local_fetch.server.routes["/slow"] = stall
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="timed out"):
        local_fetch(f"{local_fetch.base()}/slow", io.BytesIO(), timeout_s=0.2)
    assert time.monotonic() - started < 0.9


def test_a_closed_port_is_a_fetch_failure(
    local_fetch: LocalFetch, connections: list[tuple[str, int]]
) -> None:
    # Bind then close a socket to get a loopback port nobody listens on.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(FetchFailed, match="Could not fetch"):
        fetch_to_file(
            f"http://127.0.0.1:{port}/",
            io.BytesIO(),
            max_bytes=10,
            allowed_ports=frozenset({port}),
            address_allowed=lambda ip, p: str(ip) == "127.0.0.1" and p == port,
        )
    assert connections == [("127.0.0.1", port)]


# --------------------------------------------------------------------------------------------
# HTTPS pinning
# --------------------------------------------------------------------------------------------


class _RecordingContext:
    """Stands in for an SSLContext: records what wrap_socket was asked to verify."""

    verify_mode = ssl.CERT_REQUIRED
    check_hostname = True

    def __init__(self) -> None:
        self.server_hostnames: list[str | None] = []

    def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None) -> socket.socket:
        self.server_hostnames.append(server_hostname)
        return sock


def test_https_connects_to_the_pinned_address_and_verifies_the_hostname(
    server: _LocalServer, connections: list[tuple[str, int]]
) -> None:
    context = _RecordingContext()
    conn = urlfetch._PinnedHTTPSConnection(
        "audio.test",
        server.port,
        pinned_ip="127.0.0.1",
        timeout=2.0,
        context=context,  # type: ignore[arg-type]
    )
    try:
        conn.connect()
        assert conn.sock.getpeername() == ("127.0.0.1", server.port)
    finally:
        conn.close()
    assert context.server_hostnames == ["audio.test"]
    assert connections == [("127.0.0.1", server.port)]


def test_the_default_tls_context_verifies_certificates_and_hostnames() -> None:
    conn = urlfetch._PinnedHTTPSConnection(
        "audio.example", 443, pinned_ip="93.184.216.34", timeout=1.0
    )
    assert conn.tls_context.check_hostname is True
    assert conn.tls_context.verify_mode == ssl.CERT_REQUIRED
