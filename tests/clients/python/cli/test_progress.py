"""The progress bar: drawn on a terminal only, for transfers that last."""

from __future__ import annotations

import io

import pytest
from support.waiting import eventually

from stepforge.cli._progress import Progress, format_size, render


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_shows_the_share_and_sizes_of_a_known_total() -> None:
    line = render("uploading", 512 * 1024, 1024 * 1024)

    assert line == (
        "uploading [###############---------------]  50% 512.0 KiB / 1.0 MiB"
    )


def test_without_a_total_only_the_bytes_done_are_shown() -> None:
    assert render("downloading x", 1536, None) == "downloading x 1.5 KiB"


def test_the_bar_never_passes_full() -> None:
    assert "[" + "#" * 30 + "] 100%" in render("x", 20, 10)


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**3, "5.0 GiB")],
)
def test_sizes_are_in_binary_units(count: int, shown: str) -> None:
    assert format_size(count) == shown


def test_nothing_is_drawn_when_the_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()

    with Progress("uploading", 10, stream=stream, delay_s=0) as progress:
        progress.advance(10)

    assert stream.getvalue() == ""


def test_a_transfer_that_ends_before_the_delay_draws_nothing() -> None:
    terminal = Terminal()

    with Progress("uploading", 10, stream=terminal, delay_s=60) as progress:
        progress.advance(10)

    assert terminal.getvalue() == ""


def test_a_lasting_transfer_draws_until_done_then_ends_its_line() -> None:
    terminal = Terminal()

    with Progress("uploading", 10, stream=terminal, delay_s=0, interval_s=0.01) as p:
        p.advance(4)
        assert eventually(lambda: "40%" in terminal.getvalue())
        p.advance(6)
        assert eventually(lambda: terminal.getvalue().endswith("\n"))

    drawn = terminal.getvalue()
    assert drawn.startswith("\ruploading [")
    assert drawn.rstrip("\n").rsplit("\r", 1)[-1].endswith("100% 10 B / 10 B")
    assert drawn.count("\n") == 1


def test_a_measured_transfer_shows_the_measure_and_ends_its_line_on_exit() -> None:
    terminal = Terminal()
    measured = [0]

    with Progress(
        "downloading", measure=lambda: measured[0], stream=terminal, delay_s=0
    ) as progress:
        measured[0] = 2048
        assert eventually(lambda: "2.0 KiB" in terminal.getvalue())
        progress.set_done(4096)

    assert terminal.getvalue().endswith("\rdownloading 4.0 KiB\n")


def test_reads_and_chunks_are_counted() -> None:
    progress = Progress("x", stream=io.StringIO())
    reader = progress.reader(io.BytesIO(b"abcdef"))

    assert reader.read(4) == b"abcd"
    assert list(progress.track([b"12", b"345"])) == [b"12", b"345"]
    assert reader.read() == b"ef"
    assert progress.done == 11
