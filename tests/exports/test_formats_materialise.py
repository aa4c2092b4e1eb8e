"""`exports.formats.materialise`: the contract every format shares (atomic folder, refusals,
a version with its audio by reference, corpus raters)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from exports.formats import FORMATS, NativeLayoutError, materialise
from tests.exports.native_fixture import contents, jsonl, native_copy

# The database is only used to build the session's native version, once (native_fixture).
pytestmark = pytest.mark.django_db


@pytest.fixture
def native(request, tmp_path) -> Path:
    return native_copy(request, tmp_path)


def _rewrite(folder: Path, table: str, change) -> None:
    """Rewrite a native table's JSON Lines twin (what the converters read) row by row."""
    rows = [change(row) for row in jsonl(folder, table)]
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    (folder / f"{table}.jsonl").write_text(text, encoding="utf-8")


def by_reference(native: Path, media: Path) -> None:
    """Turn a copy of a version into one built with its audio by reference (as the builder's
    "reference" option writes it): no audio folder, `audio_uri` under `media`."""
    (media / "clips").mkdir(parents=True)

    def change(row: dict) -> dict:
        uri = f"clips/{row['clip_id']}.wav"
        shutil.move(native / row["file_name"], media / uri)
        return {**row, "file_name": None, "sha256": None, "audio_uri": uri}

    _rewrite(native, "clips", change)
    (native / "audio").rmdir()


@pytest.mark.parametrize("fmt", sorted(FORMATS - {"native"}))
def test_a_version_by_reference_gives_the_same_format_given_its_audio_root(native, tmp_path, fmt):
    before = contents(materialise(native, fmt, tmp_path / "copied"))
    by_reference(native, tmp_path / "media")

    with pytest.raises(NativeLayoutError, match="audio_root"):
        materialise(native, fmt, tmp_path / "refused")
    after = contents(materialise(native, fmt, tmp_path / "ref", audio_root=tmp_path / "media"))

    # The converters name the audio themselves and hash what they copy: same bytes.
    assert after == before
    assert not (tmp_path / "refused").exists()
    assert not (tmp_path / "refused.partial").exists()


def test_audio_that_does_not_match_its_sha256_is_refused(native, tmp_path):
    first = jsonl(native, "clips")[0]
    (native / first["file_name"]).write_bytes(b"RIFF but not the same")

    with pytest.raises(NativeLayoutError, match="does not match sha256"):
        materialise(native, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert not (tmp_path / "hf.partial").exists()


def test_refusals(native, tmp_path):
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        materialise(native, "csv", tmp_path / "x")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        materialise(native, "hf", tmp_path / "taken")
    with pytest.raises(NativeLayoutError, match=r"no version\.json"):
        materialise(tmp_path / "taken", "hf", tmp_path / "y")
    meta = json.loads((native / "version.json").read_text())
    (native / "version.json").write_text(json.dumps({**meta, "format_version": 2}))
    with pytest.raises(NativeLayoutError, match="format_version 2"):
        materialise(native, "hf", tmp_path / "z")


def test_native_is_a_copy(native, tmp_path):
    out = materialise(native, "native", tmp_path / "copy")

    assert contents(out) == contents(native)


def test_a_corpus_rater_is_kept_apart_from_the_annotators(native, tmp_path):
    import audformat

    _rewrite(native, "annotations", lambda row: {**row, "annotator": "corpus:emodb",
             "label_source": "corpus"} if row["annotator"] == "r0003" else row)  # fmt: skip

    db = audformat.Database.load(str(materialise(native, "audformat", tmp_path / "db")))
    assert db.raters["corpus:emodb"].type == "other"
    assert db.raters["r0001"].type == "human"
    assert "r0003" not in db.raters
    assert "corpus:emodb" in set(db["ratings"].get()["annotator"])


def test_audio_outside_the_version_is_refused(native, tmp_path):
    _rewrite(native, "clips", lambda row: {**row, "file_name": "../../etc/passwd"})

    with pytest.raises(NativeLayoutError, match="leads outside"):
        materialise(native, "labelstudio", tmp_path / "ls")
