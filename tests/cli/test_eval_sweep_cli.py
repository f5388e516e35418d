"""sfrs-eval --sweep: one model against several values of one evaluation setting; each row
equals a plain sfrs-eval run with that value; conflicting options are one-line errors."""
import json

import pytest
from click.testing import CliRunner

from sfrs.cli.eval import main as eval_main


def invoke(checkpoint, *extra):
    return CliRunner().invoke(eval_main, ["--checkpoint", str(checkpoint), "--dataset", "synthetic:tiny",
                                          "--batch-size", "16", "--no-progress", *extra])


def plain_recall(checkpoint, tmp_path, *extra):
    path = tmp_path / "plain.json"
    result = invoke(checkpoint, "--json", str(path), *extra)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text())["recall"]


def test_threshold_sweep__each_row_equals_sfrs_eval_at_that_radius(tiny_checkpoint, tmp_path):
    out = tmp_path / "sweep"
    result = invoke(tiny_checkpoint, "--sweep", "threshold=10,25", "--output", str(out))
    assert result.exit_code == 0, result.output
    swept = json.loads((out / "sweep_threshold.json").read_text())
    assert [row["value"] for row in swept["rows"]] == [10.0, 25.0]
    for row in swept["rows"]:
        expected = plain_recall(tiny_checkpoint, tmp_path, "--threshold", str(row["value"]))
        assert row["recall"] == pytest.approx(expected), row["value"]
    assert (out / "sweep_threshold.md").exists() and (out / "sweep_threshold.png").stat().st_size > 0
    assert "| 25 m |" in result.output


def test_image_size_sweep__row_equals_sfrs_eval_image_size(tiny_checkpoint, tmp_path):
    out = tmp_path / "sweep"
    result = invoke(tiny_checkpoint, "--sweep", "image_size=40x56", "--output", str(out))
    assert result.exit_code == 0, result.output
    row = json.loads((out / "sweep_image_size.json").read_text())["rows"][0]
    assert row["recall"] == pytest.approx(plain_recall(tiny_checkpoint, tmp_path, "--image-size", "40,56"))


@pytest.mark.parametrize("extra, message", [
    (["--sweep", "threshold=10", "--test-method", "five_crops"], "--sweep threshold cannot be combined with --test-method"),
    (["--sweep", "image_size=40", "--image-size", "40,56"], "--sweep image_size cannot be combined with --image-size"),
    (["--sweep", "pca_dim=8", "--pca", "8"], "cannot be combined with --pca"),
    (["--sweep", "radius=10"], "expected KEY=V1,V2,... with KEY one of threshold, image_size, pca_dim"),
    (["--sweep", "threshold=-5"], "'-5' is not a positive radius"),
])
def test_sweep__bad_combinations_are_one_line_usage_errors(tiny_checkpoint, extra, message):
    result = invoke(tiny_checkpoint, *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
