"""sfrs-eval --predictions: the labelled ranking as CSV; unlabelled --save-descriptors."""
import csv
import json
from collections import defaultdict

import h5py
import pytest
from click.testing import CliRunner

from sfrs.cli.eval import main as eval_main
from tests.cli.test_eval_unlabeled import PNG_MAGIC, plain_folders  # noqa: F401  (fixture)


def run(args):
    result = CliRunner().invoke(eval_main, args + ["--no-progress"], catch_exceptions=False)
    return result.exit_code, result.output


def rows_by_query(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["query"]].append(row)
    return rows, grouped


def test_labelled_predictions__rows_are_the_ranking_recall_was_computed_from(tiny_checkpoint, tmp_path):
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic:tiny", "--recall-at", "1,5",
                        "--json", str(tmp_path / "report.json"), "--predictions", str(tmp_path / "p.csv"),
                        "--visualize", "2"])
    assert code == 0, output
    report = json.loads((tmp_path / "report.json").read_text())
    rows, grouped = rows_by_query(tmp_path / "p.csv")

    assert list(rows[0]) == ["query", "rank", "database_image", "distance", "metres", "correct"]
    assert len(grouped) == report["num_queries"]
    for query_rows in grouped.values():
        assert [int(r["rank"]) for r in query_rows] == [1, 2, 3, 4, 5]  # default: the largest N
        distances = [float(r["distance"]) for r in query_rows]
        assert distances == sorted(distances)
        for r in query_rows:  # correct = within the radius the report used
            assert (r["correct"] == "1") == (float(r["metres"]) <= report["threshold_m"])
    for n in (1, 5):
        hits = sum(any(r["correct"] == "1" for r in q[:n]) for q in grouped.values())
        assert 100.0 * hits / report["num_queries"] == pytest.approx(report["recall"][str(n)])
    assert (tmp_path / "report_map.png").read_bytes()[:4] == PNG_MAGIC


def test_labelled_predictions__top_k_ranks_deeper_than_recall(tiny_checkpoint, tmp_path):
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic:tiny", "--recall-at", "1,5",
                        "--predictions", str(tmp_path / "p.csv"), "--top-k", "12"])
    assert code == 0, output
    _, grouped = rows_by_query(tmp_path / "p.csv")
    assert {len(q) for q in grouped.values()} == {12}


def test_labelled_top_k_without_predictions__is_a_one_line_error(tiny_checkpoint):
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic:tiny", "--top-k", "3"])
    assert code == 2 and "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--predictions" in errors[0]


def test_unlabelled__saves_descriptors_and_writes_predictions_where_asked(
    tiny_checkpoint, plain_folders, tmp_path,  # noqa: F811  (the imported fixture)
):
    queries, database = plain_folders
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--queries", str(queries), "--database", str(database),
                        "--top-k", "2", "--output", str(tmp_path / "out"), "--predictions", str(tmp_path / "mine.csv"),
                        "--save-descriptors", str(tmp_path / "d.h5")])
    assert code == 0, output
    rows, grouped = rows_by_query(tmp_path / "mine.csv")
    assert list(rows[0]) == ["query", "rank", "database_image", "distance"] and len(grouped) == 6
    with h5py.File(tmp_path / "d.h5", "r") as handle:
        assert handle["queries"].shape[0] == 6 and handle["database"].shape[0] == 12
        assert "query_utm" not in handle and len(handle["database_paths"]) == 12
    assert (tmp_path / "out" / "predictions.png").read_bytes()[:4] == PNG_MAGIC
