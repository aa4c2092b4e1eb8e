"""A small cluster on one Linux machine: network namespaces on a private bridge.

Used by tests/test_cluster.py and bench/cluster.py. Each "host" is a network namespace with
its own veth link to a Linux bridge in the root namespace, its own IP on a private /24 that
nothing on this machine uses, its own hostname (a UTS namespace per process tree, so
`socket.gethostname()` differs per host, as on real machines) and its own empty working and
data directories (no shared filesystem for media; the code tree is shared read-only, as an
image would be).

PostgreSQL and Redis on this machine listen on 127.0.0.1 only and are not reconfigured:
`forward()` starts a TCP forwarder (socat) in the root namespace bound to the bridge's IP,
so the namespaces reach them at <bridge ip>:<port>. `redis_server()` starts a private Redis on
the bridge's IP instead (a broker no other test's worker consumes from).

Everything created is removed by `close()` (the context manager's exit, and atexit if the
process ends another way): processes started here, namespaces, links, the bridge. Names
carry a per-run suffix (emo<pid>...), so runs side by side do not collide. Needs root (or
CAP_NET_ADMIN and CAP_SYS_ADMIN); without it `ClusterUnavailable` says so.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ClusterUnavailable(RuntimeError):
    """Network namespaces cannot be made here (no privilege, no `ip`, no socat)."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ClusterUnavailable(
            f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has an address or a route in."""
    nets = []
    for line in _run("ip", "-o", "-4", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    for line in _run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            if first not in ("default", "broadcast", "local", "unreachable"):
                nets.append(ipaddress.ip_network(first, strict=False))
    return nets


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A private /24 (10.213.k.0/24) overlapping no address or route of this machine."""
    used = _used_networks()
    for step in range(256):
        candidate = ipaddress.ip_network(f"10.213.{(seed + step * 37) % 256}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise ClusterUnavailable("no free /24 in 10.213.0.0/16 for the cluster's bridge")


def free_port(host: str) -> int:
    """A TCP port nothing listens on at `host` (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 20.0, what: str = "") -> None:
    """Poll until something accepts connections at host:port (or fail at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s {what}")
        time.sleep(0.1)


@dataclass
class Host:
    """One namespace: its role (web, w1, ...), names, IP and folders."""

    role: str
    netns: str
    veth: str
    ip: str
    hostname: str
    workdir: Path
    datadir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    alive: bool = True


class NetnsCluster:
    """Bridge + one namespace per role; see the module docstring. Use as a context manager."""

    def __init__(self, roles: Sequence[str], base: Path) -> None:
        self.tag = f"emo{os.getpid() % 100000}"
        self.base = base
        self.roles = list(roles)
        self.bridge = f"{self.tag}br"
        self.subnet: ipaddress.IPv4Network | None = None
        self.bridge_ip = ""
        self.hosts: dict[str, Host] = {}
        self._root_processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._closed = False

    # --- building and tearing down ---------------------------------------------------------

    def __enter__(self) -> NetnsCluster:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        for tool in ("ip", "unshare", "socat"):
            if shutil.which(tool) is None:
                raise ClusterUnavailable(f"`{tool}` is not installed; the cluster needs it")
        probe = f"{self.tag}-probe"
        made = _run("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            raise ClusterUnavailable(
                "cannot create a network namespace (`ip netns add` failed: "
                f"{made.stderr.strip()}); the cluster needs root or CAP_SYS_ADMIN + CAP_NET_ADMIN"
            )
        _run("ip", "netns", "del", probe, check=False)
        atexit.register(self.close)
        self.subnet = free_subnet(os.getpid())
        addresses = list(self.subnet.hosts())
        self.bridge_ip = str(addresses[0])
        prefix = self.subnet.prefixlen
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.bridge_ip}/{prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, role in enumerate(self.roles, start=1):
            host = Host(
                role=role,
                netns=f"{self.tag}-{role}",
                veth=f"{self.tag}{role}"[:15],
                ip=str(addresses[i]),
                hostname=f"{self.tag}-{role}",
                workdir=self.base / role / "work",
                datadir=self.base / role / "data",
            )
            host.workdir.mkdir(parents=True)
            host.datadir.mkdir(parents=True)
            self.hosts[role] = host
            peer = f"{self.tag}p{i}"
            _run("ip", "netns", "add", host.netns)
            _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", host.veth, "master", self.bridge, "up")
            _run("ip", "link", "set", peer, "netns", host.netns)
            inside = ("ip", "-n", host.netns)
            _run(*inside, "link", "set", peer, "name", "eth0")
            _run(*inside, "addr", "add", f"{host.ip}/{prefix}", "dev", "eth0")
            _run(*inside, "link", "set", "eth0", "up")
            _run(*inside, "link", "set", "lo", "up")
            _run(*inside, "route", "add", "default", "via", self.bridge_ip)

    def close(self) -> None:
        """Stop everything started here and remove every namespace, link and the bridge."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            self._kill_namespace(host)
        for process in self._root_processes:
            _stop(process)
        for log in self._logs:
            log.close()
        for host in self.hosts.values():
            _run("ip", "netns", "del", host.netns, check=False)
            _run("ip", "link", "del", host.veth, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # --- services in the root namespace ------------------------------------------------------

    def forward(self, target_host: str, target_port: int) -> int:
        """A socat forwarder bridge_ip:<free port> -> target; returns the port."""
        port = free_port(self.bridge_ip)
        process = subprocess.Popen(
            ["socat", f"TCP-LISTEN:{port},bind={self.bridge_ip},reuseaddr,fork",
             f"TCP:{target_host}:{target_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._root_processes.append(process)
        wait_port(self.bridge_ip, port, what="(socat forwarder)")
        return port

    def redis_server(self) -> int:
        """A private redis-server on bridge_ip:<free port>, no persistence; returns the port."""
        port = free_port(self.bridge_ip)
        process = subprocess.Popen(
            ["redis-server", "--bind", self.bridge_ip, "--port", str(port), "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._root_processes.append(process)
        wait_port(self.bridge_ip, port, what="(redis-server)")
        return port

    def start_root(self, argv: Sequence[str], log: Path, env: dict[str, str]) -> None:
        """A process in the root namespace (e.g. the S3 server), stopped by close()."""
        out = log.open("ab")
        self._logs.append(out)
        process = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self._root_processes.append(process)

    # --- processes on the hosts --------------------------------------------------------------

    def spawn(
        self, role: str, argv: Sequence[str], env: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        """Start argv on the host: in its network namespace, with its own hostname, in its
        working directory; output to `log`."""
        host = self.hosts[role]
        out = log.open("ab")
        self._logs.append(out)
        command = ["ip", "netns", "exec", host.netns, "unshare", "--uts", "sh", "-c",
                   'hostname "$0" && exec "$@"', host.hostname, *argv]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=host.workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        host.processes.append(process)
        return process

    def pids(self, role: str) -> list[int]:
        """Every process in the host's namespace (started here or by those)."""
        result = _run("ip", "netns", "pids", self.hosts[role].netns, check=False)
        return [int(p) for p in result.stdout.split() if p.isdigit()]

    def kill_host(self, role: str) -> list[int]:
        """The host dies: SIGKILL every process in its namespace, then remove the namespace
        (its link goes with it). Returns the pids killed."""
        host = self.hosts[role]
        killed = self._kill_namespace(host)
        _run("ip", "netns", "del", host.netns, check=False)
        host.alive = False
        return killed

    def _kill_namespace(self, host: Host) -> list[int]:
        killed = []
        for _ in range(5):  # a fork racing the kill is caught by the next pass
            pids = self.pids(host.role) if host.alive else []
            pids += [p.pid for p in host.processes if p.poll() is None]
            if not pids:
                break
            for pid in set(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            for process in host.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
        return sorted(set(killed))

    def iter_hosts(self, prefix: str = "") -> Iterator[Host]:
        return (h for h in self.hosts.values() if h.role.startswith(prefix))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
