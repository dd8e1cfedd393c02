"""Progress reporting of ``opencues api …``: rich bars on a terminal, plain lines otherwise."""

from __future__ import annotations

from opencues.api_commands import Progress


def test_plain_progress_writes_lines(capsys):
    progress = Progress("uploading f.csv", total=2_000_000, plain=True)
    progress.advance(1_000_000)
    progress.finish("uploaded f.csv")
    err = capsys.readouterr().err
    assert "uploading f.csv: 1.0 / 2.0 MB" in err and "uploaded f.csv: 1.0 / 2.0 MB" in err


def test_rich_progress_draws_a_bar(capsys):
    progress = Progress("downloading x", total=100, plain=False)
    progress.advance(100)
    progress.finish("saved x")
    err = capsys.readouterr().err
    assert "saved x" in err and "━" in err


def test_plain_is_chosen_when_stderr_is_not_a_terminal(capsys):
    assert Progress("job", plain=None).plain is True
