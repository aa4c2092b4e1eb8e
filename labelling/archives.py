"""Reading uploads that are archives (zip, tar, tar.gz/bz2/xz) without trusting them.

Each member is judged on its own: a name that escapes the archive (absolute, '..', drive
letters), a link or a device is refused with a reason; a hidden file or a macOS resource fork
is refused as ``hidden``; a member larger than the limit is refused before extraction, and
extraction itself stops at the limit (zip bombs lie about sizes).

The whole archive is bounded too (``ExpandLimits.total_bytes``): every byte decompressed
counts, whether it was kept or belonged to a member refused half-way, and in a compressed
tar also the bytes decompressed only to skip a refused member (a tar.gz has no index: reaching
the next header means inflating everything before it). Once the budget is spent, the members
left are refused as ``too_large`` (a zip lists them; a tar cannot be read further, so its rest
is one refusal). Framework-free.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

HIDDEN_REASON = (
    "Hidden files and macOS resource forks (names starting with a dot, __MACOSX folders) "
    "are not imported."
)

_COPY_CHUNK = 1 << 20
# Header bytes a tar may decompress per member beyond its data (a 512-byte header, padding,
# a pax or GNU long-name header): what the total budget allows on top of member bytes.
_TAR_OVERHEAD_PER_MEMBER = 2048


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_suffix(name: str) -> str:
    """The archive suffix of a name, e.g. '.tar.gz' ('' when it is not an archive name)."""
    lower = name.lower()
    return max((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), key=len, default="")


def hidden_root(relative: str) -> str | None:
    """The leading part of a path up to its first hidden component, or None if none is.

    'a/.git/config' -> 'a/.git'; '__MACOSX/._x.wav' -> '__MACOSX'; 'x/.DS_Store' ->
    'x/.DS_Store'. Hidden files and macOS resource forks are not user content.
    """
    parts = PurePosixPath(relative).parts
    for index, part in enumerate(parts):
        if part.startswith(".") or part == "__MACOSX":
            return "/".join(parts[: index + 1])
    return None


def is_ignored_name(relative: str) -> bool:
    """Whether a path is or lies under a hidden file or folder (see ``hidden_root``)."""
    return hidden_root(relative) is not None


@dataclass
class Member:
    name: str
    size: int
    problem: str = ""  # empty when the member may be extracted
    problem_code: str = ""


@dataclass(frozen=True)
class ExpandLimits:
    """Bounds on one archive: per member, member count, and total bytes decompressed."""

    member_bytes: int
    members: int
    total_bytes: int


class ArchiveTooLarge(Exception):
    """The archive decompressed past its total budget."""


def safe_member_name(raw: str) -> str | None:
    """The member's relative POSIX path, or None if it would escape the extraction root."""
    name = raw.replace("\\", "/")
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name).parts
    if any(part == ".." for part in parts):
        return None
    clean = "/".join(part for part in parts if part not in ("", "."))
    return clean or None


@dataclass
class _Budget:
    """Bytes decompressed so far against the archive's total."""

    total: int
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.total - self.used)


@dataclass
class _HiddenGroup:
    name: str
    count: int = 0
    size: int = 0
    folder: bool = False  # the hidden part is a folder above the members, not a file


def iter_members(
    archive: Path, dest_dir: Path, limits: ExpandLimits
) -> Iterator[tuple[Member, Path | None]]:
    """Yield each file member with the path it was extracted to (None if refused).

    Files are written to `dest_dir` under sequential names, never under the member's name.
    Hidden members under one hidden folder (``__MACOSX/…``, ``.git/…``) are reported once,
    as that folder, after the other members. Raises on an archive that cannot be opened at
    all; an archive that breaks (or runs out of budget) half-way yields what was read and
    then raises, so the caller reports the rest.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    budget = _Budget(limits.total_bytes)
    hidden: dict[str, _HiddenGroup] = {}
    try:
        yield from _judge_members(archive, dest_dir, limits, budget, hidden)
    except Exception:
        # The archive broke off: the hidden members seen so far are still reported.
        for group in hidden.values():
            yield _hidden_member(group), None
        raise
    for group in hidden.values():
        yield _hidden_member(group), None


def _judge_members(
    archive: Path,
    dest_dir: Path,
    limits: ExpandLimits,
    budget: _Budget,
    hidden: dict[str, _HiddenGroup],
) -> Iterator[tuple[Member, Path | None]]:
    count = 0
    for raw_name, size, kind, reader in _open(archive, limits):
        if kind == "dir":
            continue
        count += 1
        name = safe_member_name(raw_name)
        display = name or raw_name
        member = Member(name=display[:500], size=size)
        if count > limits.members:
            member.problem_code = "too_many"
            member.problem = (
                f"The archive has more than {limits.members:,} members; the rest were not read."
            )
            yield member, None
            return
        if name is None:
            member.problem_code = "path_escape"
            member.problem = "path escapes the archive (absolute or '..'): refused"
            yield member, None
            continue
        root = hidden_root(name)
        if root is not None:
            group = hidden.setdefault(root, _HiddenGroup(root))
            group.count += 1
            group.size += max(0, size)
            group.folder = group.folder or root != name
            continue
        if kind != "file":
            member.problem_code = "not_regular_file"
            member.problem = f"archive member is a {kind}, not a regular file: refused"
            yield member, None
            continue
        if size > limits.member_bytes:
            member.problem_code = "too_large"
            member.problem = f"{size} bytes is over the limit of {limits.member_bytes} bytes"
            yield member, None
            continue
        if size > budget.left:
            member.problem_code = "too_large"
            member.problem = over_total_reason(limits.total_bytes)
            yield member, None
            continue
        target = dest_dir / f"m{count:06d}{_suffix(name)}"
        problem = _extract(reader, target, member, limits, budget)
        if problem is not None:
            member.problem_code, member.problem = problem
            yield member, None
            continue
        yield member, target


def hidden_reason(count: int = 1) -> str:
    if count <= 1:
        return HIDDEN_REASON
    return f"{HIDDEN_REASON} ({count} files in this folder.)"


def _hidden_member(group: _HiddenGroup) -> Member:
    return Member(
        name=(group.name + ("/" if group.folder else ""))[:500],
        size=group.size,
        problem_code="hidden",
        problem=hidden_reason(group.count),
    )


def over_total_reason(total: int) -> str:
    return (
        f"Expanding this member would take the archive past its limit of {total:,} bytes "
        "of expanded audio; it was not extracted. Please split the archive."
    )


def _extract(
    reader: Callable[[], AbstractContextManager[IO[bytes]]],
    target: Path,
    member: Member,
    limits: ExpandLimits,
    budget: _Budget,
) -> tuple[str, str] | None:
    """Copy one member within both limits; (code, reason) when it is refused."""
    cap = min(limits.member_bytes, budget.left)
    written = 0
    try:
        with reader() as source, target.open("wb") as out:
            while chunk := source.read(min(_COPY_CHUNK, cap - written + 1)):
                written += len(chunk)
                budget.used += len(chunk)
                if written > cap:
                    target.unlink(missing_ok=True)
                    if cap == limits.member_bytes:
                        return "too_large", (
                            f"could not extract: member is larger than the limit of "
                            f"{limits.member_bytes} bytes"
                        )
                    return "too_large", over_total_reason(limits.total_bytes)
                out.write(chunk)
    except ArchiveTooLarge:
        # A compressed tar's stream ran past the budget inside this member: the member is
        # refused here, and the next header read ends the archive.
        target.unlink(missing_ok=True)
        return "too_large", over_total_reason(limits.total_bytes)
    except (ValueError, OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        target.unlink(missing_ok=True)
        return "corrupt", f"could not extract: {exc}"
    member.size = written
    return None


def _suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ""


Entry = tuple[str, int, str, Callable[[], AbstractContextManager[IO[bytes]]]]


def _open(archive: Path, limits: ExpandLimits) -> Iterator[Entry]:
    """Yield (name, size, kind, reader) for each member; kind is file/dir/link/device.

    The format follows the name (staging keeps the archive suffix), not the content: a tar
    holding a zip near its end would also pass zipfile.is_zipfile.
    """
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                kind = "dir" if info.is_dir() else ("link" if mode == 0o120000 else "file")
                yield info.filename, info.file_size, kind, partial(zf.open, info)
        return
    with archive.open("rb") as raw, _decompressed(raw) as stream:
        seen = [0]
        bounded = _BoundedStream(
            stream,
            lambda: limits.total_bytes + _TAR_OVERHEAD_PER_MEMBER * (seen[0] + 1),
        )
        # typeshed asks every fileobj for write() and close(); reading with a fileobj of one's
        # own, tarfile calls neither.
        with tarfile.open(fileobj=bounded, mode="r:") as tf:  # type: ignore[call-overload]
            for info in tf:
                seen[0] += 1
                if info.isdir():
                    kind = "dir"
                elif info.issym() or info.islnk():
                    kind = "link"
                elif info.isfile():
                    kind = "file"
                else:
                    kind = "device"
                yield info.name, info.size, kind, partial(_tar_member, tf, info)


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo) -> AbstractContextManager[IO[bytes]]:
    source = tf.extractfile(info)
    if source is None:
        raise tarfile.TarError(f"{info.name} has no data")
    return source


class _Stream(Protocol):
    """What the tar reader needs of the (decompressed) archive stream."""

    def read(self, size: int = ..., /) -> bytes: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...
    def tell(self) -> int: ...


def _decompressed(raw: BinaryIO) -> AbstractContextManager[_Stream]:
    """The tar stream inside a (possibly compressed) file, chosen by magic bytes."""
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return _NotClosing(raw)


class _NotClosing(AbstractContextManager[BinaryIO]):
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def __enter__(self) -> BinaryIO:
        return self.raw

    def __exit__(self, *exc: object) -> None:
        return None


class _BoundedStream:
    """A seekable reader that counts the bytes the stream below has to produce.

    Reading counts, and so does seeking: forward in a compressed stream decompresses what it
    skips, backward restarts from the beginning. Past ``limit()`` it raises ArchiveTooLarge.
    """

    def __init__(self, stream: _Stream, limit: Callable[[], int]) -> None:
        self._stream = stream
        self._limit = limit
        self._work = 0

    def _check(self, more: int) -> None:
        """Refuse work that would pass the limit, before doing it."""
        if self._work + more > self._limit():
            raise ArchiveTooLarge(
                f"it expands past its limit ({self._work:,} bytes decompressed, "
                f"{more:,} more needed to go on)"
            )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._limit() - self._work + 1)
        self._check(min(size, 1))  # nothing left at all: stop before reading
        data = self._stream.read(size)
        self._work += len(data)
        if self._work > self._limit():
            raise ArchiveTooLarge(f"it expands past its limit ({self._work:,} bytes decompressed)")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        current = self._stream.tell()
        if whence == 1:
            offset += current
        elif whence == 2:
            raise OSError("seeking from the end of an archive stream is not supported")
        cost = offset - current if offset >= current else offset  # backward: from the start
        self._check(cost)
        self._work += cost
        return self._stream.seek(offset)

    def tell(self) -> int:
        return self._stream.tell()
