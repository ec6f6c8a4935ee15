"""Table output of the stats commands with control characters in stored text."""

from services.stats.cli import format_fields, format_table

DETAIL = "red \x1b[31mRED\x1b[0m \x1b]0;new title\x07 line1\nline2\x9b"


def test_table_escapes_control_characters():
    lines = format_table([{"kind": "breach", "detail": DETAIL}], ["kind", "detail"])

    assert len(lines) == 2
    assert "\x1b" not in lines[1]
    assert "\x07" not in lines[1]
    assert "\n" not in lines[1]
    assert "\x9b" not in lines[1]
    assert lines[1].endswith(r"red \x1b[31mRED\x1b[0m \x1b]0;new title\x07 line1\nline2\x9b")


def test_fields_escape_control_characters():
    lines = format_fields({"detail": DETAIL}, ["detail"])

    assert lines == [r"detail  red \x1b[31mRED\x1b[0m \x1b]0;new title\x07 line1\nline2\x9b"]


def test_table_keeps_printable_unicode():
    lines = format_table([{"detail": "v1.2.0 → v1.1.0, 50.0 %"}], ["detail"])

    assert lines[1] == "v1.2.0 → v1.1.0, 50.0 %"
