"""The GPS data sets (a CSV of photos with latitude/longitude, a folder of photos with EXIF
GPS tags) as ``--dataset`` of the commands."""
import json

import pytest
from click.testing import CliRunner

from tests.data.test_gps_formats import write_csv, write_exif_folder, write_street_csv
from tests.tiny import TINY_MODEL

SETS = [arg for item in TINY_MODEL for arg in ("--set", item)]


@pytest.mark.parametrize("layout", ["csv", "exif"])
def test_sfrs_eval__reads_gps_data_sets(tmp_path, tiny_checkpoint, layout):
    from sfrs.cli.eval import main as eval_main

    spec = write_street_csv(tmp_path / "city") if layout == "csv" else tmp_path / "walk"
    if layout == "exif":
        write_exif_folder(spec)
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(tiny_checkpoint), "--dataset", str(spec),
                                            "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["num_database"], report["num_queries"], report["queries_without_positive"]) == (6, 3, 0)


def test_sfrs_train_dry_run__reads_a_gps_csv(tmp_path):
    from sfrs.cli.train import main as train_main

    source = write_street_csv(tmp_path / "city")
    result = CliRunner().invoke(train_main, ["--dataset", str(source), "--dry-run", "--output", str(tmp_path / "run"),
                                             "--no-progress"] + SETS)
    assert result.exit_code == 0, result.output
    assert "3 of 3 training queries kept" in result.output


def test_sfrs_eval__bad_csv_row__exit_code_2_one_line(tmp_path, tiny_checkpoint):
    from sfrs.cli.eval import main as eval_main

    source = write_csv(tmp_path / "bad.csv", [("nope.jpg", 48.0, 2.0, "database")])
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(tiny_checkpoint), "--dataset", str(source)])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if "error" in line] == [
        f"sfrs-eval: error: {source} line 2: image {tmp_path / 'nope.jpg'} not found"]
