"""Output formats of a dataset version, converted from its native folder (docs/datasets.md).

One entry point: `materialise(version_folder, fmt, out)` writes format `fmt` of a ready
native version folder to the folder `out`, and returns `out`. It is what the CLI
(`manage.py export --format`) and the API's `download.zip?format=…` call; it never changes
the native folder. Framework-free (no Django): converters read the native layout through
`exports.formats.native` only.

Guarantees, for every format:
- Deterministic: the same native folder gives byte-identical files (fixed ordering, no
  clock), and every format folder ends with a SHA256SUMS over its files.
- Atomic: the folder is written as `<out>.partial` (removed first if a crashed try left one)
  and renamed to `out` when complete; `out` must not exist.
- Streaming: tables are read and written row by row; what a format holds in memory is
  said in its module.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from exports.core.archive import write_sha256sums
from exports.formats import audformat, hf, labelstudio
from exports.formats.native import NativeLayoutError, NativeVersion

__all__ = ["FORMATS", "NativeLayoutError", "default_name", "materialise"]

Converter = Callable[[NativeVersion, Path], None]


def _native(native: NativeVersion, out: Path) -> None:
    out.rmdir()  # copytree creates it
    shutil.copytree(native.folder, out)


CONVERTERS: dict[str, Converter] = {
    "native": _native,
    "hf": hf.write,
    "audformat": audformat.write,
    "labelstudio": labelstudio.write,
}
FORMATS = frozenset(CONVERTERS)


def default_name(native_name: str, fmt: str) -> str:
    """The folder (or zip stem) name of a format: `callcentre-v3` for native,
    `callcentre-v3-hf`, `callcentre-v3-audformat`, `callcentre-v3-labelstudio` otherwise."""
    return native_name if fmt == "native" else f"{native_name}-{fmt}"


def materialise(
    version_folder: Path, fmt: str, out: Path, *, audio_root: Path | None = None
) -> Path:
    """Write format `fmt` (one of FORMATS) of the ready native version in `version_folder`
    to the new folder `out` and return `out`.

    `audio_root` is where a version built with its audio by reference finds it (the
    clips' `audio_uri` are relative to it: pass MEDIA_ROOT); the converters copy the audio
    into their folder either way. Native is copied as it is (by reference stays so).

    Raises ValueError for an unknown format, NativeLayoutError when `version_folder` is not
    a native v1 version, FileExistsError when `out` exists. Native is a plain copy (its own
    SHA256SUMS included); every other format gets a SHA256SUMS of its own.
    """
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    native = NativeVersion.open(Path(version_folder), audio_root=audio_root)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        CONVERTERS[fmt](native, partial)
        if fmt != "native":
            write_sha256sums(partial)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out
