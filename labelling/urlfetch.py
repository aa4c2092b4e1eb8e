"""SSRF-safe download of a user-supplied URL ("import audio from a URL").

Framework-free on purpose (stdlib only, no Django, no requests): the import service calls
`fetch_to_file` and stores the file; this module only decides *whether* and *how* to fetch.

The defences, in the order a fetch meets them:

1. `check_url` - syntax: http/https only, no userinfo, a port from an allow-list, and no
   unusual IPv4 spellings (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) that resolvers would
   quietly turn into 127.0.0.1.
2. The host is resolved once and *every* address is checked (`is_public_address`, or the
   injected `address_allowed`). One bad address refuses the whole name, so a name that answers
   with one public and one private address cannot be used to reach the private one.
3. The connection goes to an address that was checked (it is pinned), while the Host header,
   SNI and certificate verification still use the hostname. A DNS answer that changes between
   the check and the connect (DNS rebinding) therefore cannot move us.
4. Redirects are followed by hand, and every hop goes through 1-3 again.
5. The body is streamed with a byte limit; a Content-Length above the limit is refused before
   any of the body is read.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "DEFAULT_PORTS",
    "FetchFailed",
    "FetchResult",
    "UnsafeURL",
    "check_url",
    "fetch_to_file",
    "is_public_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS: frozenset[int] = frozenset({80, 443, 8080, 8443})
ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "EmoLoop-URL-import/1"
_CHUNK = 64 * 1024
_MAX_FILENAME = 120
_FALLBACK_FILENAME = "download"


class UnsafeURL(ValueError):
    """Refused before or during fetching; str() is a clear sentence naming the reason.

    A refusal names at most the one offending address, never the whole resolved list.
    """


class FetchFailed(IOError):
    """Network/HTTP failure, size limit exceeded, too many redirects."""


@dataclass(frozen=True)
class FetchResult:
    final_url: str
    status: int
    content_type: str | None  # media type only, lower-case, e.g. "audio/wav"; None if absent
    bytes_written: int
    filename: str  # safe basename: [A-Za-z0-9._-], at most 120 characters, never empty


# --------------------------------------------------------------------------------------------
# Address policy
# --------------------------------------------------------------------------------------------

# Named first so that the refusal says "cloud metadata" rather than just "link-local".
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
    )
)

# Special-purpose ranges (IANA registries) spelled out rather than trusting only
# ipaddress.is_global, whose tables differ between Python patch releases.
_BLOCKED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private (RFC 1918) address"),
        ("100.64.0.0/10", "a shared carrier-grade NAT (RFC 6598) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private (RFC 1918) address"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("192.168.0.0/16", "a private (RFC 1918) address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)

_BLOCKED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol assignment address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "an SRv6 segment identifier"),
        ("fc00::/7", "a private (unique-local) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64_V6 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPAT_V6 = ipaddress.IPv6Network("::/96")


def _why_not_public(ip: IPAddress) -> str | None:
    """None if `ip` is a public unicast address, else a phrase saying what it is instead."""
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        # Forms that carry an IPv4 address inside: judge the IPv4 address they lead to.
        if ip.ipv4_mapped is not None:
            inner = _why_not_public(ip.ipv4_mapped)
            return f"an IPv4-mapped form of {inner}" if inner else None
        if ip in _NAT64_V6:
            inner = _why_not_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"a NAT64 form of {inner}" if inner else None
        if ip.teredo is not None:
            # Teredo is refused outright (it is not globally routable unicast); say so
            # precisely when it embeds a non-public server or client.
            for embedded in ip.teredo:
                inner = _why_not_public(embedded)
                if inner:
                    return f"a Teredo address embedding {inner}"
            return "a Teredo tunnel address"
        if ip.sixtofour is not None:
            inner = _why_not_public(ip.sixtofour)
            if inner:
                return f"a 6to4 address embedding {inner}"
        if ip in _COMPAT_V6 and int(ip) > 1:
            return "an IPv4-compatible (deprecated) IPv6 address"
        for net, why in _BLOCKED_V6:
            if ip in net:
                return why
        if ip not in _GLOBAL_UNICAST_V6:
            return "a reserved address"
        if ip.scope_id:
            return "a scoped address"
    else:
        for net4, why in _BLOCKED_V4:
            if ip in net4:
                return why
    # Belt and braces for anything the tables above do not name.
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a globally routable address"
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses that are safe to fetch from."""
    return _why_not_public(ip) is None


def _default_address_allowed(ip: IPAddress, port: int) -> bool:
    """The production policy: any public address, whatever the (already allow-listed) port."""
    return is_public_address(ip)


def _default_resolve(host: str, port: int) -> list[str]:
    """Every TCP address `host` resolves to, in resolver order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


# --------------------------------------------------------------------------------------------
# URL syntax
# --------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# WHATWG "ends in a number": a host whose last label is a decimal or 0x-hex number is parsed
# as IPv4 by browsers and by inet_aton()/getaddrinfo(), so `2130706433`, `0177.0.0.1`,
# `0x7f.1` and `127.1` all mean 127.0.0.1. Only the canonical dotted quad is accepted.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
_FORBIDDEN_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _ascii_host(host: str) -> str:
    """The hostname as sent on the wire (IDNA), or UnsafeURL if it is not a valid name."""
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UnsafeURL(f"The host name {host!r} is not a valid domain name.") from exc
    labels = ascii_host.removesuffix(".").split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise UnsafeURL(f"The host name {host!r} is not a valid domain name.")
    return ascii_host


def check_url(
    url: str, *, allowed_ports: frozenset[int] = DEFAULT_PORTS
) -> urllib.parse.SplitResult:
    """Refuse (UnsafeURL) a URL whose shape alone makes it unsafe to fetch.

    Checks scheme, userinfo, port, host syntax and IPv4 spellings; it does not resolve the
    host - `fetch_to_file` checks the addresses. Returns the split URL.
    """
    if not isinstance(url, str) or not url:
        raise UnsafeURL("The URL is empty.")
    if _FORBIDDEN_URL_CHARS.search(url):
        raise UnsafeURL("The URL contains spaces, control characters or backslashes.")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise UnsafeURL("The URL is malformed.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme!r}" if scheme else "no scheme"
        raise UnsafeURL(f"Only http and https URLs can be imported, not {shown}.")
    if "@" in parts.netloc:
        raise UnsafeURL("URLs with a user name or password (user@host) are not accepted.")
    host = parts.hostname
    if not host:
        raise UnsafeURL("The URL has no host.")
    try:
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL("The URL's port is not a valid number.") from exc
    if port is None:
        port = _default_port(scheme)
    if port not in allowed_ports:
        allowed = ", ".join(str(p) for p in sorted(allowed_ports))
        raise UnsafeURL(f"Port {port} is not allowed (allowed: {allowed}).")

    if "[" in parts.netloc:
        # Bracketed IPv6 literal. Zone ids (fe80::1%eth0) name a local interface: refused.
        if "%" in host:
            raise UnsafeURL("IPv6 addresses with a zone id (%interface) are not accepted.")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise UnsafeURL(f"The host [{host}] is not a valid IPv6 address.") from exc
        return parts
    # Judged after IDNA mapping, which folds e.g. full-width digits to ASCII ones.
    ascii_host = _ascii_host(host)
    last_label = ascii_host.removesuffix(".").rsplit(".", 1)[-1]
    if _NUMERIC_LABEL.fullmatch(last_label) and not _CANONICAL_V4.fullmatch(ascii_host):
        raise UnsafeURL(
            f"The host {host!r} is an unusual spelling of an IPv4 address; "
            "write it as a plain dotted quad such as 203.0.113.7."
        )
    return parts


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Pinned connections
# --------------------------------------------------------------------------------------------


def _connect_socket(ip: str, port: int, timeout: float | None) -> socket.socket:
    """Open the TCP connection. The single place that connects (tests spy on it)."""
    sock = socket.create_connection((ip, port), timeout=timeout)
    with contextlib.suppress(OSError):  # platforms without TCP_NODELAY
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection that connects to a checked address while Host stays the hostname."""

    def __init__(self, host: str, port: int, *, pinned_ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_ip = pinned_ip

    def connect(self) -> None:
        self.sock = _connect_socket(self.pinned_ip, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address; SNI and certificate verification use the hostname."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        pinned_ip: str,
        timeout: float,
        context: ssl.SSLContext | None = None,
    ) -> None:
        # The default context verifies the chain and checks the certificate against the
        # hostname (check_hostname=True, CERT_REQUIRED).
        if context is None:
            context = ssl.create_default_context()
            context.set_alpn_protocols(["http/1.1"])  # as http.client's own default does
        self.tls_context = context
        super().__init__(host, port, timeout=timeout, context=self.tls_context)
        self.pinned_ip = pinned_ip

    def connect(self) -> None:
        sock = _connect_socket(self.pinned_ip, self.port, self.timeout)
        try:
            # SNI and certificate verification use the hostname, not the pinned address.
            self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _origin(parts: urllib.parse.SplitResult) -> str:
    """scheme://host[:port] for messages: no path or query, which may carry tokens."""
    return f"{parts.scheme.lower()}://{parts.netloc}"


def _checked_addresses(
    host: str,
    port: int,
    resolve: Callable[[str, int], list[str]],
    address_allowed: Callable[[IPAddress, int], bool],
) -> list[str]:
    """Resolve once, refuse if any address is not allowed, return the addresses to connect to."""
    literal = _literal_address(host)
    if literal is not None:
        candidates = [literal]
    else:
        try:
            answers = resolve(host, port)
        except OSError as exc:
            raise FetchFailed(f"Could not resolve the host {host!r}.") from exc
        if not answers:
            raise FetchFailed(f"The host {host!r} did not resolve to any address.")
        candidates = []
        for answer in answers:
            try:
                candidates.append(ipaddress.ip_address(answer))  # keeps a %scope, if any
            except ValueError as exc:
                raise FetchFailed(f"The host {host!r} resolved to an unusable answer.") from exc
    # Every address is checked before any connection is made: one bad answer refuses the name.
    for ip in candidates:
        if address_allowed(ip, port) and not getattr(ip, "scope_id", None):
            continue
        what = _why_not_public(ip) or "not allowed by the import policy"
        if getattr(ip, "scope_id", None):
            what = "a scoped (interface-local) address"
        if literal is not None:
            raise UnsafeURL(f"Refusing {ip} on port {port}: it is {what}.")
        raise UnsafeURL(f"The host {host!r} resolves to {ip}, which is {what}; refusing it.")
    return [str(ip) for ip in candidates]


# Everything RFC 3986 allows in a path or query, plus "%" so existing escapes are kept;
# anything else (non-ASCII, quotes, brackets) is percent-encoded, as browsers do.
_TARGET_SAFE = "/?:@!$&'()*+,;=-._~%"


def _request_target(parts: urllib.parse.SplitResult) -> str:
    """The origin-form request target: path and query, never the fragment."""
    target = urllib.parse.quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + urllib.parse.quote(parts.query, safe=_TARGET_SAFE)
    return target


def _open(
    parts: urllib.parse.SplitResult, host: str, port: int, addresses: list[str], timeout_s: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send the GET to the first checked address that accepts a connection."""
    target = _request_target(parts)
    last_error: OSError | None = None
    for ip in addresses:
        conn: http.client.HTTPConnection
        if parts.scheme.lower() == "https":
            conn = _PinnedHTTPSConnection(host, port, pinned_ip=ip, timeout=timeout_s)
        else:
            conn = _PinnedHTTPConnection(host, port, pinned_ip=ip, timeout=timeout_s)
        try:
            conn.connect()
        except ssl.SSLError:
            conn.close()
            raise  # a certificate problem will not be different on the next address
        except OSError as exc:
            conn.close()
            last_error = exc
            continue
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.putheader("User-Agent", USER_AGENT)
            conn.putheader("Accept", "*/*")
            conn.putheader("Accept-Encoding", "identity")
            conn.putheader("Connection", "close")
            conn.endheaders()
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise
    assert last_error is not None  # addresses is never empty
    raise last_error


def _stream(response: http.client.HTTPResponse, dest: BinaryIO, max_bytes: int, origin: str) -> int:
    """Copy the body to `dest`; never write more than `max_bytes` bytes."""
    written = 0
    while True:
        chunk = response.read(min(_CHUNK, max_bytes - written + 1))
        if not chunk:
            return written
        if written + len(chunk) > max_bytes:
            # The over-limit chunk is not written: dest holds at most max_bytes bytes.
            raise FetchFailed(
                f"The file at {origin} is larger than the limit of {max_bytes} bytes."
            )
        dest.write(chunk)
        written += len(chunk)


def _safe_filename(raw: str | None) -> str:
    """A basename made of [A-Za-z0-9._-], at most 120 characters, never empty or dot-only."""
    if not raw:
        return _FALLBACK_FILENAME
    base = re.split(r"[/\\]", raw)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    if len(base) > _MAX_FILENAME:
        stem, dot, ext = base.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            base = stem[: _MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            base = base[:_MAX_FILENAME]
    if not base.strip("._-"):
        return _FALLBACK_FILENAME
    return base


def _filename_for(response: http.client.HTTPResponse, parts: urllib.parse.SplitResult) -> str:
    # HTTPMessage is an email.message.Message: get_filename() decodes filename*= (RFC 2231/5987).
    from_header = response.msg.get_filename()
    if from_header:
        return _safe_filename(from_header)
    path_name = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
    return _safe_filename(path_name)


def fetch_to_file(
    url: str,
    dest: BinaryIO,
    *,
    max_bytes: int,
    timeout_s: float = 15.0,
    max_redirects: int = 5,
    allowed_ports: frozenset[int] = DEFAULT_PORTS,
    resolve: Callable[[str, int], list[str]] = _default_resolve,
    address_allowed: Callable[[IPAddress, int], bool] = _default_address_allowed,
) -> FetchResult:
    """GET `url` into `dest`, refusing anything that could reach an internal service.

    Raises UnsafeURL when the URL, or any redirect target, is refused; FetchFailed on network
    or HTTP errors, non-2xx final answers, a body over `max_bytes`, and redirect loops or more
    than `max_redirects` redirects. `timeout_s` bounds the connect and every read. On
    FetchFailed `dest` may hold a partial body (never more than `max_bytes`): discard it.
    """
    if max_bytes < 0:
        raise ValueError("max_bytes must not be negative")
    seen: set[str] = set()
    current = url
    for _hop in range(max_redirects + 1):
        parts = check_url(current, allowed_ports=allowed_ports)
        scheme = parts.scheme.lower()
        origin = _origin(parts)
        literal = "[" in parts.netloc or _literal_address(parts.hostname or "") is not None
        host = parts.hostname if literal else _ascii_host(parts.hostname or "")
        assert host  # check_url refuses URLs without a host
        port = parts.port or _default_port(scheme)
        addresses = _checked_addresses(host, port, resolve, address_allowed)
        seen.add(urllib.parse.urlunsplit(parts._replace(fragment="")))

        try:
            conn, response = _open(parts, host, port, addresses, timeout_s)
        except ssl.SSLError as exc:
            raise FetchFailed(f"The TLS connection to {origin} failed: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise FetchFailed(f"Could not fetch from {origin}: {_error_text(exc)}") from exc
        try:
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise FetchFailed(
                        f"{origin} answered HTTP {response.status} without a Location header."
                    )
                current = urllib.parse.urljoin(current, location.strip())
                if urllib.parse.urldefrag(current).url in seen:
                    raise FetchFailed(f"Redirect loop detected at {origin}.")
                continue
            if not 200 <= response.status < 300:
                raise FetchFailed(
                    f"{origin} answered HTTP {response.status} {response.reason}".rstrip() + "."
                )
            if response.length is not None and response.length > max_bytes:
                raise FetchFailed(
                    f"The file at {origin} announces {response.length} bytes, "
                    f"more than the limit of {max_bytes} bytes."
                )
            try:
                written = _stream(response, dest, max_bytes, origin)
            except FetchFailed:
                raise
            except (OSError, http.client.HTTPException) as exc:
                raise FetchFailed(f"Reading from {origin} failed: {_error_text(exc)}") from exc
            content_type = (
                response.msg.get_content_type() if response.getheader("Content-Type") else None
            )
            return FetchResult(
                final_url=current,
                status=response.status,
                content_type=content_type,
                bytes_written=written,
                filename=_filename_for(response, parts),
            )
        finally:
            response.close()
            conn.close()
    raise FetchFailed(f"Too many redirects (more than {max_redirects}).")
