"""sfrs-report from the command line: planted inputs, a bad path, and a real tiny trained run."""
import json

import pytest
import yaml
from click.testing import CliRunner

from sfrs.cli.report import main as report_main
from sfrs.cli.train import main as train_main
from tests.reports.test_run_report import plant_run, plant_sweep, with_changes
from tests.tiny import TINY_TRAINING

PNG_MAGIC = b"\x89PNG"


def run(args):
    return CliRunner().invoke(report_main, args + ["--no-progress"], catch_exceptions=False)


def test_runs_and_sweep_mixed__report_written(tmp_path):
    first = plant_run(tmp_path / "runs" / "a", with_changes(), [20, 30], best_test_r1=41)
    sweep = plant_sweep(tmp_path / "sweep")
    result = run([str(first), str(sweep), "--output", str(tmp_path / "out"), "--title", "Mixed"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.startswith("# Mixed\n")
    assert "| sweep/optim.lr=0.001 |" in text and "| a |" in text
    assert "report of 3 entries" in result.output


@pytest.mark.parametrize("kind", ["missing", "plain_folder"])
def test_bad_path__one_line_error_naming_it_exit_2(tmp_path, kind):
    good = plant_run(tmp_path / "good", with_changes(), [20, 30])
    bad = tmp_path / "not_a_run"
    if kind == "plain_folder":
        bad.mkdir()
    result = CliRunner().invoke(report_main, [str(good), str(bad), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sfrs-report: error: ") and str(bad) in lines[0]
    assert not (tmp_path / "out" / "report.md").exists()


def test_no_path__usage_error_exit_2(tmp_path):
    result = CliRunner().invoke(report_main, ["--output", str(tmp_path / "out")])
    assert result.exit_code == 2


@pytest.mark.slow
def test_real_tiny_run__report_with_galleries_and_pdf(tiny_city_root, tmp_path):
    """The smallest sfrs-train schedule on synthetic:tiny, then the report with galleries:
    the gallery's evaluation of best.pt gives the test recall training measured."""
    output = tmp_path / "run"
    sets = [arg for item in TINY_TRAINING + ["train.queries_per_epoch=8"] for arg in ("--set", item)]
    trained = CliRunner().invoke(
        train_main, ["--generations", "1", "--epochs", "1", "--output", str(output), "--no-progress",
                     "--device", "cpu"] + sets, catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    result = run([str(output), "--output", str(tmp_path / "out"), "--galleries", "2", "--pdf", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    results = json.loads((output / "results.json").read_text())
    entry = report["entries"][0]
    assert entry["finished"] == 1 and entry["runs"][0]["status"] == "complete"
    assert entry["final"]["test"]["1"]["mean"] == pytest.approx(results["generations"][-1]["test"]["1"])
    gallery = report["galleries"]["run"]
    assert gallery["recall"]["1"] == pytest.approx(results["best"]["test"]["1"], abs=0.01)
    for image in gallery["images"] + report["figures"]:
        assert (tmp_path / "out" / image).read_bytes()[:4] == PNG_MAGIC
    assert (tmp_path / "out" / "report.pdf").stat().st_size > 1000
    assert yaml.safe_load((output / "config.yaml").read_text())["data"]["dataset"] == "synthetic:tiny"
