"""Marked blocks of a Markdown file: each tool rewrites its own section, never the others'."""
from sfrs.utils.io import write_marked_block


def test_marked_block__appended_then_replaced_in_place_leaving_other_sections(tmp_path):
    path = tmp_path / "experiments.md"
    write_marked_block(path, "ssl", "## SSL\nfirst", "Experiments")
    write_marked_block(path, "adaptation", "## Adaptation\nrows", "Experiments")
    write_marked_block(path, "ssl", "## SSL\nsecond\n", "Experiments")
    assert path.read_text() == (
        "# Experiments\n\n<!-- ssl:start -->\n## SSL\nsecond\n<!-- ssl:end -->\n\n"
        "<!-- adaptation:start -->\n## Adaptation\nrows\n<!-- adaptation:end -->\n"
    )


def test_marked_block__text_with_backslashes_and_group_references_is_kept_verbatim(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text("# Doc\n\nintro\n")
    write_marked_block(path, "x", r"a \1 \g<0> $", "Doc")
    write_marked_block(path, "x", r"b \1 \g<0> $", "Doc")
    assert path.read_text() == "# Doc\n\nintro\n\n<!-- x:start -->\nb \\1 \\g<0> $\n<!-- x:end -->\n"
