"""sfrs-data stats through its click command: output files, skipped splits, one-line errors."""
import json

from click.testing import CliRunner

from sfrs.cli.data import main
from tests.analysis.test_dataset_stats import write_vg


def test_sfrs_data_stats__writes_stats_and_figures_and_lists_missing_splits(tmp_path):
    root = write_vg(tmp_path / "handmade", "test")
    result = CliRunner().invoke(main, ["stats", "--dataset", str(root), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "test: 5 database images, 3 queries (1 without a positive within 25 m" in result.output
    assert "train: skipped (" in result.output and "split 'val' not found" in result.output
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["splits"]["test"]["num_queries"] == 3
    for kind in ("map", "positives", "nearest", "samples"):
        assert (tmp_path / "out" / f"test_{kind}.png").is_file()


def test_sfrs_data_stats__missing_dataset__exit_code_2_one_line(tmp_path):
    result = CliRunner().invoke(main, ["stats", "--dataset", str(tmp_path / "absent"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfrs-data: error: ") and "data set not found" in lines[0]
