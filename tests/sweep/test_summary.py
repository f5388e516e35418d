"""The summary of a sweep against numpy on planted run folders: mean and sample std of the
final generation, best.pt and every generation, transfer blocks; CSV / Markdown cells with
n/a for one seed; figures."""
import csv
import io

import numpy as np
import pytest

from sfrs.sweep import build_summary, format_stat, recall_block, summarise_results
from sfrs.sweep.plots import figure_name, plot_summary
from sfrs.sweep.summary import render_csv, render_markdown
from tests.sweep.planted import plant, planted_results

PNG_MAGIC = b"\x89PNG"


def test_recall_block__mean_and_sample_std_like_numpy_and_none_for_one_value():
    values = [31.5, 40.0, 52.25]
    block = recall_block([{"1": v, "5": v + 1} for v in values] + [None], ns=("1", "5"))
    assert block["1"]["mean"] == pytest.approx(np.mean(values))
    assert block["1"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert block["5"]["values"] == [v + 1 for v in values]
    one = recall_block([{"1": 12.0}], ns=("1",))["1"]
    assert one == {"mean": 12.0, "std": None, "values": [12.0]}
    assert format_stat(one) == "12.0 ± n/a" and format_stat(recall_block([], ns=("1",))["1"]) == "-"


def test_build_summary__planted_runs_against_numpy_with_an_unfinished_seed_left_out(tmp_path, lr_spec):
    runs = lr_spec.plan()
    for run in runs:
        lr = run.configuration.values["optim.lr"]
        # lr 0.02, seed 2 was killed: its numbers must not enter the statistics
        plant(tmp_path / run.folder, planted_results(lr, run.seed, complete=not (lr == 0.02 and run.seed == 2)))
    summary = build_summary(tmp_path, runs, varied=["optim.lr"], seeds=[0, 1, 2], command="sfrs-sweep ...")
    assert summary["format"] == "sfrs-sweep-summary" and summary["version"] == 1
    assert summary["varied"] == ["optim.lr"] and summary["seeds"] == [0, 1, 2]
    first, second = summary["configurations"]
    assert first["name"] == "optim.lr=0.01" and first["values"] == {"optim.lr": 0.01}
    assert first["runs"] == [f"runs/optim.lr=0.01/seed{s}" for s in range(3)]
    assert first["finished"] == 3 and second["finished"] == 2 and second["finished_seeds"] == [0, 1]
    assert "transfer" not in first
    for configuration, lr, seeds in ((first, 0.01, [0, 1, 2]), (second, 0.02, [0, 1])):
        results = [planted_results(lr, s) for s in seeds]
        for split in ("val", "test"):
            for n in ("1", "5", "10"):
                final = np.array([r["generations"][-1][split][n] for r in results])
                best = np.array([r["best"][split][n] for r in results])
                gen0 = np.array([r["generations"][0][split][n] for r in results])
                assert configuration["final"][split][n]["mean"] == pytest.approx(final.mean())
                assert configuration["final"][split][n]["std"] == pytest.approx(final.std(ddof=1))
                assert configuration["best"][split][n]["mean"] == pytest.approx(best.mean())
                assert configuration["best"][split][n]["std"] == pytest.approx(best.std(ddof=1))
                assert configuration["generations"][0][split][n]["std"] == pytest.approx(gen0.std(ddof=1))
        assert [g["generation"] for g in configuration["generations"]] == [0, 1]


def test_summarise_results__transfer_per_data_set():
    results = [planted_results(0.01, s) for s in (0, 1)]
    transfer = [{"pitts30k": {"1": 50.0, "5": 60.0, "10": 70.0}, "st_lucia": {"1": 20.0, "5": 30.0, "10": 40.0}},
                {"pitts30k": {"1": 54.0, "5": 61.0, "10": 75.0}}]
    block = summarise_results(results, transfer)["transfer"]
    assert block["pitts30k"]["1"]["mean"] == pytest.approx(52.0)
    assert block["pitts30k"]["10"]["std"] == pytest.approx(np.std([70.0, 75.0], ddof=1))
    assert block["st_lucia"]["1"] == {"mean": 20.0, "std": None, "values": [20.0]}


def test_tables_and_figures__cells_match_the_statistics(tmp_path, lr_spec):
    runs = lr_spec.plan()
    for run in runs:
        if run.configuration.values["optim.lr"] == 0.01 or run.seed == 0:  # lr 0.02: one seed only
            plant(tmp_path / run.folder, planted_results(run.configuration.values["optim.lr"], run.seed))
    transfer = {run.folder: {"pitts30k": {"1": 40.0 + run.seed, "5": 50.0, "10": 60.0}}
                for run in runs if run.configuration.values["optim.lr"] == 0.01}
    summary = build_summary(tmp_path, runs, varied=["optim.lr"], seeds=[0, 1, 2], command="sfrs-sweep x",
                            transfer=transfer)
    rows = list(csv.DictReader(io.StringIO(render_csv(summary))))
    assert [r["configuration"] for r in rows] == ["optim.lr=0.01", "optim.lr=0.02"]
    assert rows[0]["optim.lr"] == "0.01" and rows[0]["seeds"] == "3" and rows[1]["seeds"] == "1"
    final = np.array([planted_results(0.01, s)["generations"][-1]["test"]["1"] for s in range(3)])
    assert float(rows[0]["final_test_R@1_mean"]) == pytest.approx(final.mean(), abs=1e-4)
    assert float(rows[0]["final_test_R@1_std"]) == pytest.approx(final.std(ddof=1), abs=1e-4)
    assert rows[1]["final_test_R@1_std"] == "n/a"
    assert float(rows[0]["gen1_val_R@5_mean"]) == pytest.approx(
        np.mean([planted_results(0.01, s)["generations"][1]["val"]["5"] for s in range(3)]), abs=1e-4)
    assert float(rows[0]["transfer_pitts30k_R@1_mean"]) == pytest.approx(41.0)
    assert rows[1]["transfer_pitts30k_R@1_mean"] == ""

    figures = plot_summary(summary, tmp_path)
    assert figures == ["generations_r1.png", "r1_vs_optim.lr.png"]
    for name in figures:
        assert (tmp_path / name).read_bytes()[:4] == PNG_MAGIC and (tmp_path / name).stat().st_size > 5000
    text = render_markdown(summary, figures)
    assert f"| optim.lr=0.01 | 3 | " in text and f"{final.mean():.1f} ± {final.std(ddof=1):.1f}" in text
    only = planted_results(0.02, 0)["generations"][-1]["test"]["1"]
    assert f"{only:.1f} ± n/a" in text
    assert "| optim.lr=0.01 | pitts30k | 41.0 ± 1.0 |" in text
    assert "![generations_r1](generations_r1.png)" in text


def test_plots__categorical_values_and_one_series_per_other_key(tmp_path):
    from sfrs.sweep import SweepSpec, parse_grid
    from tests.sweep.conftest import COMMON

    spec = SweepSpec(axes=tuple(parse_grid(["optim.optimizer=adam,sgd", "train.generations.1.soft_weight=0,0.5"])),
                     seeds=(0, 1), options=COMMON)
    runs = spec.plan()
    for i, run in enumerate(runs):
        plant(tmp_path / run.folder, planted_results(0.01 * (1 + i // 2), run.seed))
    summary = build_summary(tmp_path, runs, varied=[a.key for a in spec.axes], seeds=[0, 1], command="x")
    assert plot_summary(summary, tmp_path) == ["generations_r1.png", "r1_vs_optim.optimizer.png",
                                               figure_name("train.generations.1.soft_weight")]
    assert figure_name("train.generations.*.soft_weight") == "r1_vs_train.generations._.soft_weight.png"
    assert plot_summary(build_summary(tmp_path / "none", runs, varied=["optim.optimizer"], seeds=[0], command="x"),
                        tmp_path / "none") == []
