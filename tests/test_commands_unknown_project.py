"""Every command that takes a project's slug refuses an unknown one with the same clear
error, before touching anything (emoloop.commands.project_named)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from labelling.models import Annotation, Clip, ImportBatch

pytestmark = pytest.mark.django_db

COMMANDS = [
    ("ingest", ["no-such-project", "{tmp}"]),
    ("import_corpus", ["no-such-project", "{tmp}", "--preset", "emodb"]),
    (
        "import_predictions",
        ["no-such-project", "{tmp}/p.csv", "--model", "m", "--model-version", "1"],
    ),
    ("import_labelstudio", ["no-such-project", "{tmp}/export.json"]),
    ("train", ["no-such-project"]),
    ("export", ["no-such-project", "--out", "{tmp}/out"]),
]


@pytest.mark.parametrize(("command", "args"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_an_unknown_project_is_refused_by_name_and_nothing_is_written(command, args, tmp_path):
    (tmp_path / "p.csv").write_text("file,happy\na.wav,1\n")
    (tmp_path / "export.json").write_text("[]")
    with pytest.raises(CommandError, match=r"^No project with slug 'no-such-project'\.$"):
        call_command(command, *[a.format(tmp=tmp_path) for a in args])
    assert (ImportBatch.objects.count(), Clip.objects.count(), Annotation.objects.count()) == (
        0,
        0,
        0,
    )
    assert not (tmp_path / "out").exists()
