"""sfrs-eval without coordinates (--queries/--database) and --visualize in the labelled mode."""
import csv
import shutil

import pytest
from click.testing import CliRunner

from sfrs.cli.eval import main as eval_main

PNG_MAGIC = b"\x89PNG"


@pytest.fixture
def plain_folders(tiny_city_root, tmp_path):
    """Tiny-city images under plain names (no coordinates), queries partly in a subfolder."""
    queries, database = tmp_path / "queries", tmp_path / "database"
    (queries / "sub").mkdir(parents=True)
    database.mkdir()
    for i, image in enumerate(sorted((tiny_city_root / "images/test/queries").iterdir())[:6]):
        shutil.copy(image, queries / ("sub" if i % 2 else ".") / f"q{i}.jpg")
    for i, image in enumerate(sorted((tiny_city_root / "images/test/database").iterdir())[:12]):
        shutil.copy(image, database / f"d{i:02d}.jpg")
    return queries, database


def run(args):
    result = CliRunner().invoke(eval_main, args + ["--no-progress"], catch_exceptions=False)
    return result.exit_code, result.output


def test_unlabelled__writes_top_k_csv_and_grid(tiny_checkpoint, plain_folders, tmp_path):
    queries, database = plain_folders
    out = tmp_path / "pred"
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--queries", str(queries), "--database", str(database),
                        "--top-k", "3", "--output", str(out)])
    assert code == 0, output
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert list(rows[0]) == ["query", "rank", "database_image", "distance"]
    expected_queries = ["q0.jpg", "q2.jpg", "q4.jpg", "sub/q1.jpg", "sub/q3.jpg", "sub/q5.jpg"]  # sorted, recursive
    assert [r["query"] for r in rows] == [q for q in expected_queries for _ in range(3)]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3] * 6
    for start in range(0, len(rows), 3):
        distances = [float(r["distance"]) for r in rows[start:start + 3]]
        assert distances == sorted(distances)
    assert all(r["database_image"].startswith("d") for r in rows)
    assert (out / "predictions.png").read_bytes()[:4] == PNG_MAGIC


def test_unlabelled__empty_folder_is_one_line(tiny_checkpoint, plain_folders, tmp_path):
    _, database = plain_folders
    (tmp_path / "empty").mkdir()
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--queries", str(tmp_path / "empty"),
                        "--database", str(database)])
    assert code == 2 and "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "empty" in errors[0] and "no " in errors[0]


def test_unlabelled__rejects_options_that_need_coordinates(tiny_checkpoint, plain_folders):
    queries, database = plain_folders
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--queries", str(queries), "--database", str(database),
                        "--dataset", "synthetic:tiny"])
    assert code == 2 and "--dataset" in output
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--queries", str(queries)])
    assert code == 2 and "--database" in output


def test_labelled_visualize__writes_examples_and_failures_next_to_the_json(tiny_checkpoint, tiny_city_root, tmp_path):
    code, output = run(["--checkpoint", str(tiny_checkpoint), "--dataset", "synthetic:tiny", "--json",
                        str(tmp_path / "report.json"), "--visualize", "2"])
    assert code == 0, output
    for name in ("report_examples.png", "report_failures.png"):
        assert (tmp_path / name).read_bytes()[:4] == PNG_MAGIC
