"""How a failed PostgreSQL tool is reported: by the line that says what went wrong."""

from __future__ import annotations

from fleetwatch.store.embedded import _first_error


def test_the_first_error_is_the_reason_not_the_cleanup_after_it() -> None:
    output = "\n".join(
        [
            'The files belonging to this database system will be owned by user "postgres".',
            "creating subdirectories ... ok",
            'initdb: error: could not create directory "d/global": No space left on device',
            'initdb: removing contents of data directory "d"',
            "initdb: error: failed to remove contents of data directory",
        ]
    )
    assert _first_error(output) == (
        'initdb: error: could not create directory "d/global": No space left on device'
    )


def test_without_an_error_line_the_last_line_is_shown() -> None:
    assert _first_error("starting\nstopped early\n\n") == "stopped early"
    assert _first_error("") == ""
