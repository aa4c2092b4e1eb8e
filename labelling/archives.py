"""Reading uploads that are archives (zip, tar, tar.gz/bz2/xz) without trusting them.

Each member is judged on its own: a name that escapes the archive (absolute, '..', drive
letters), a link or a device is refused with a reason; a member larger than the limit is
refused before extraction; extraction itself stops at the limit (zip bombs lie about sizes).
Framework-free.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def is_ignored_name(relative: str) -> bool:
    """Hidden files and macOS resource forks are not user content."""
    parts = PurePosixPath(relative).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


@dataclass
class Member:
    name: str
    size: int
    problem: str = ""  # empty when the member may be extracted
    problem_code: str = ""


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


class _Limited:
    """Copy at most `limit` bytes; raise if the source has more."""

    @staticmethod
    def copy(source: BinaryIO, dest: BinaryIO, limit: int) -> int:
        written = 0
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise ValueError(f"member is larger than the limit of {limit} bytes")
            dest.write(chunk)
        return written


def iter_members(
    archive: Path, dest_dir: Path, max_bytes: int, max_members: int
) -> Iterator[tuple[Member, Path | None]]:
    """Yield each file member with the path it was extracted to (None if refused).

    Files are written to `dest_dir` under sequential names, never under the member's name.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    opened = _open(archive)
    count = 0
    for raw_name, size, kind, reader in opened:
        if kind == "dir":
            continue
        count += 1
        name = safe_member_name(raw_name)
        display = name or raw_name
        if name is not None and is_ignored_name(name):
            continue
        member = Member(name=display[:500], size=size)
        if count > max_members:
            member.problem_code, member.problem = (
                "too_many",
                (f"archive has more than {max_members} members; the rest were not read"),
            )
            yield member, None
            break
        if name is None:
            member.problem_code = "path_escape"
            member.problem = "path escapes the archive (absolute or '..'): refused"
            yield member, None
            continue
        if kind != "file":
            member.problem_code = "not_regular_file"
            member.problem = f"archive member is a {kind}, not a regular file: refused"
            yield member, None
            continue
        if size > max_bytes:
            member.problem_code = "too_large"
            member.problem = f"{size} bytes is over the limit of {max_bytes} bytes"
            yield member, None
            continue
        target = dest_dir / f"m{count:06d}{_suffix(name)}"
        try:
            with reader() as source, target.open("wb") as out:
                member.size = _Limited.copy(source, out, max_bytes)
        except (ValueError, OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            target.unlink(missing_ok=True)
            member.problem_code = "too_large" if "limit" in str(exc) else "corrupt"
            member.problem = f"could not extract: {exc}"
            yield member, None
            continue
        yield member, target


def _suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ""


def _open(archive: Path):
    """Yield (name, size, kind, reader) for each member; kind is file/dir/link/device."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                kind = "dir" if info.is_dir() else ("link" if mode == 0o120000 else "file")
                yield info.filename, info.file_size, kind, (lambda i=info: zf.open(i))
        return
    with tarfile.open(archive) as tf:
        for info in tf:
            if info.isdir():
                kind = "dir"
            elif info.issym() or info.islnk():
                kind = "link"
            elif info.isfile():
                kind = "file"
            else:
                kind = "device"
            yield info.name, info.size, kind, (lambda i=info: tf.extractfile(i))
