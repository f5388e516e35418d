#!/usr/bin/env python
"""Do SFRS's soft region labels help? SFRS against its hard-loss-only twin over seeds and
across the synthetic city's occlusion knob.

Every run trains the same schedule: ``--generations`` generations of ``--epochs`` epochs
each (generation 0 as long as the others, so that "later generations train longer" cannot
be the effect), the default model and mining. Two arms differ only in the soft weight:

- ``sfrs``: the configured soft weights (0.5 from generation 1, teacher temperatures
  0.07 / 0.06 / 0.05);
- ``hard_only``: ``train.generations.*.soft_weight=0``: same epochs, initialisation,
  seed, data order and region negatives.

Cities: ``synthetic:small:occlusion=F`` for each ``--occlusion`` F (a vehicle next to the
camera hides that fraction of every query; 0 is the default city). Each run is an ordinary
resumable run folder ``OUTPUT/occlusion<F>/<arm>/seed<k>``: rerun the command after an
interruption. Nothing is selected on the test split: the tables report the final
generation and every generation as trained.

    python tools/soft_label_study.py --output runs/soft_label_study [--seeds 3] [--write-docs]
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import click
import numpy as np

from sfrs.config import load_config
from sfrs.sweep import finished
from sfrs.training import train
from sfrs.utils.io import atomic_write_json, write_marked_block

ARMS = {"sfrs": [], "hard_only": ["train.generations.*.soft_weight=0"]}
NS = ("1", "5", "10")
SPLITS = ("val", "test")
#: teacher temperatures at which the cached labels' entropy is re-measured offline.
TEMPERATURES = (0.07, 0.05, 0.03, 0.02, 0.01)
REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "soft_label_ablation.md"
PLOT = REPO / "docs" / "soft_label_study.png"


def run_folder(root: Path, occlusion: float, arm: str, seed: int) -> Path:
    return root / f"occlusion{occlusion:g}" / arm / f"seed{seed}"


def dataset(occlusion: float) -> str:
    return f"synthetic:small:occlusion={occlusion:g}" if occlusion else "synthetic:small"


def run_all(root: Path, occlusions: Sequence[float], seeds: int, generations: int, epochs: int,
            extra: Sequence[str], progress: bool) -> None:
    for seed in range(seeds):  # seed-major: a partial study already has every cell
        for occlusion in occlusions:
            for arm, overrides in ARMS.items():
                output = run_folder(root, occlusion, arm, seed)
                if finished(output) is not None:
                    continue
                click.echo(f"== occlusion {occlusion:g} {arm} seed {seed}")
                config = load_config(overrides=[f"data.dataset={dataset(occlusion)}", f"seed={seed}",
                                                *overrides, *extra], generations=generations, epochs=epochs)
                train(config, output, progress=progress, log=lambda line: None)


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    values = list(values)
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def fmt(cell: Dict[str, float], signed: bool = False) -> str:
    return f"{cell['mean']:{'+' if signed else ''}.1f} +- {cell['std']:.1f}"


def load_results(root: Path, occlusions: Sequence[float], seeds: int) -> Dict[float, Dict[str, List[Dict]]]:
    """Complete runs only: {occlusion: {arm: [results per seed]}}; a seed counts only when
    both arms finished it, so that differences stay paired."""
    out: Dict[float, Dict[str, List[Dict]]] = {}
    for occlusion in occlusions:
        pairs = [{arm: finished(run_folder(root, occlusion, arm, seed)) for arm in ARMS} for seed in range(seeds)]
        pairs = [p for p in pairs if all(r is not None for r in p.values())]
        out[occlusion] = {arm: [p[arm] for p in pairs] for arm in ARMS}
    return out


def label_entropy_by_temperature(run: Path, generation: int, positives: int) -> Dict[str, float]:
    """Offline: the entropy of generation ``generation``'s cached labels, relative to the
    uniform entropy, at several teacher temperatures. Per query the ``positives`` labelled
    positives least similar to it in the teacher's global space stand in for the student's
    difficult positives (which the student re-picks at every refresh)."""
    import h5py

    with h5py.File(run / "softlabels" / f"gen{generation}.h5", "r") as handle:
        sims, ids = handle["similarities"][()].astype(np.float64), handle["positive_ids"][()]
    ratios = {t: [] for t in TEMPERATURES}
    within, across = [], []
    for q in range(len(sims)):
        valid = sims[q][ids[q] >= 0]
        if len(valid) < 2:
            continue
        chosen = valid[np.argsort(valid[:, 0])[:positives]]
        within.append(float((chosen.max(1) - chosen.min(1)).mean()))
        across.append(float(chosen[:, 0].max() - chosen[:, 0].min()))
        flat = chosen.reshape(-1)
        for t in TEMPERATURES:
            logits = (flat - flat.max()) / t
            p = np.exp(logits) / np.exp(logits).sum()
            ratios[t].append(float(-(p * np.log(np.maximum(p, 1e-300))).sum() / np.log(len(flat))))
    return {**{f"tau={t:g}": float(np.mean(v)) for t, v in ratios.items()},
            "within_positive_spread": float(np.mean(within)), "global_spread_across_positives": float(np.mean(across))}


def summarise(results: Dict[float, Dict[str, List[Dict]]], root: Path) -> Dict:
    """Per occlusion: per arm and generation mean +- std of Recall@N, the paired SFRS -
    hard-only difference per generation, label statistics of the SFRS arm."""
    summary: Dict = {}
    for occlusion, arms in results.items():
        seeds = len(arms["sfrs"])
        if seeds == 0:
            continue
        # generation g of a run does not depend on how many follow it: runs of a longer
        # schedule count with their first generations
        generations = min(len(r["generations"]) for runs in arms.values() for r in runs)
        rows = []
        for g in range(generations):
            row: Dict = {"generation": g}
            for arm, runs in arms.items():
                for split in SPLITS:
                    for n in NS:
                        row[f"{arm}_{split}_R@{n}"] = mean_std(r["generations"][g][split][n] for r in runs)
            for split in SPLITS:
                row[f"diff_{split}_R@1"] = mean_std(
                    a["generations"][g][split]["1"] - b["generations"][g][split]["1"]
                    for a, b in zip(arms["sfrs"], arms["hard_only"]))
            stats = [r["generations"][g].get("stats", {}) for r in arms["sfrs"]]
            for key in ("soft/teacher_entropy", "soft/uniform_entropy", "soft/teacher_spread", "soft/agreement"):
                if all(key in st for st in stats):
                    row[key] = mean_std(st[key] for st in stats)
            if g >= 1:
                offline = [label_entropy_by_temperature(
                    run_folder(root, occlusion, "sfrs", seed), g, 5) for seed in range(seeds)]
                row["offline"] = {key: mean_std(o[key] for o in offline) for key in offline[0]}
            rows.append(row)
        summary[f"{occlusion:g}"] = {"seeds": seeds, "dataset": dataset(occlusion), "generations": rows,
                                     "minutes": {arm: mean_std(r["seconds"] / 60 for r in runs)
                                                 for arm, runs in arms.items()}}
    return summary


def render(summary: Dict, command: str) -> str:
    lines = ["## Seeds and occlusion: SFRS against its hard-only twin", "",
             f"Command: `{command}`", "",
             "Both arms train the same schedule (every generation, generation 0 included, the same number of",
             "epochs; each generation re-initialised; default model, mining and hard-negative memory); the only",
             "difference is the soft weight (0.5 from generation 1 against 0). Cells: mean +- std over seeds of",
             "each generation's final model; *difference* is SFRS minus hard-only for the same seed (paired).",
             "Nothing is selected on test.", ""]
    for key, block in summary.items():
        lines += [f"### `{block['dataset']}` (occlusion {key}), {block['seeds']} seeds", "",
                  "| gen | split | SFRS R@1 | hard-only R@1 | difference R@1 | SFRS R@5 | hard-only R@5 | "
                  "SFRS R@10 | hard-only R@10 |", "|---|---|---|---|---|---|---|---|---|"]
        for row in block["generations"]:
            for split in SPLITS:
                lines.append(
                    f"| {row['generation']} | {split} | {fmt(row[f'sfrs_{split}_R@1'])} | "
                    f"{fmt(row[f'hard_only_{split}_R@1'])} | {fmt(row[f'diff_{split}_R@1'], signed=True)} | "
                    f"{fmt(row[f'sfrs_{split}_R@5'])} | {fmt(row[f'hard_only_{split}_R@5'])} | "
                    f"{fmt(row[f'sfrs_{split}_R@10'])} | {fmt(row[f'hard_only_{split}_R@10'])} |")
        minutes = block["minutes"]
        lines += ["", f"Minutes per run: SFRS {fmt(minutes['sfrs'])}, hard-only {fmt(minutes['hard_only'])}.", ""]
    lines += ["### How informative are the labels?", "",
              "During training (means over each generation's steps, SFRS arm): the teacher's label entropy",
              "against the entropy of uniform labels over the same entries (5 difficult positives x 9",
              "regions: log 45 = 3.81 nats), the range of the teacher's cosine similarities over those",
              "entries, and how often the student's top entry is the teacher's. Offline, from the cached",
              "label files: the same entropy ratio if the labels were sharpened with a lower teacher",
              "temperature, and where the similarity range comes from (regions of one positive, or the",
              "global descriptors of different positives).", "",
              "| occlusion | gen | entropy / uniform | similarity range | range / tau | agreement | "
              + " | ".join(f"ratio at tau {t:g}" for t in TEMPERATURES) + " | range within a positive | "
              "range across positives |",
              "|---|---|---|---|---|---|" + "---|" * len(TEMPERATURES) + "---|---|"]
    for key, block in summary.items():
        for row in block["generations"]:
            if "soft/teacher_entropy" not in row:
                continue
            ratio = row["soft/teacher_entropy"]["mean"] / row["soft/uniform_entropy"]["mean"]
            tau = {1: 0.07, 2: 0.06, 3: 0.05}.get(row["generation"], float("nan"))
            spread = row["soft/teacher_spread"]["mean"]
            off = row["offline"]
            lines.append(f"| {key} | {row['generation']} | {ratio:.3f} | {spread:.3f} | {spread / tau:.2f} | "
                         f"{row['soft/agreement']['mean']:.2f} | "
                         + " | ".join(f"{off[f'tau={t:g}']['mean']:.3f}" for t in TEMPERATURES)
                         + f" | {off['within_positive_spread']['mean']:.3f} | "
                         f"{off['global_spread_across_positives']['mean']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(summary: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary)
    fig, axes = plt.subplots(len(SPLITS), len(keys), figsize=(4.2 * len(keys), 6.4), squeeze=False, sharey="row")
    for col, key in enumerate(keys):
        rows = summary[key]["generations"]
        gens = [r["generation"] for r in rows]
        for r, split in enumerate(SPLITS):
            ax = axes[r][col]
            for arm, label in (("sfrs", "SFRS"), ("hard_only", "hard-only")):
                mean = np.array([row[f"{arm}_{split}_R@1"]["mean"] for row in rows])
                std = np.array([row[f"{arm}_{split}_R@1"]["std"] for row in rows])
                ax.plot(gens, mean, marker="o", label=label)
                ax.fill_between(gens, mean - std, mean + std, alpha=0.2)
            ax.set_title(f"occlusion {key}, {split} ({summary[key]['seeds']} seeds)")
            ax.set_xticks(gens)
            ax.set_xlabel("generation")
            ax.set_ylabel(f"{split} R@1 (%)")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", required=True, type=click.Path(file_okay=False))
@click.option("--occlusion", "occlusions", default="0,0.5", show_default=True, help="Comma-separated occlusion values.")
@click.option("--seeds", default=3, show_default=True)
@click.option("--generations", default=4, show_default=True)
@click.option("--epochs", default=3, show_default=True, help="Epochs of every generation.")
@click.option("--set", "extra", multiple=True, help="Extra config override for every run.")
@click.option("--progress/--no-progress", default=False)
@click.option("--summarise-only", is_flag=True, help="Only tabulate the runs that finished.")
@click.option("--write-docs", is_flag=True, help="Write the section of docs/soft_label_ablation.md and its plot.")
def main(output: str, occlusions: str, seeds: int, generations: int, epochs: int, extra: Sequence[str],
         progress: bool, summarise_only: bool, write_docs: bool) -> None:
    """Train both arms for every occlusion and seed (resumable), then write
    OUTPUT/summary.json and OUTPUT/summary.md (and with --write-docs the docs section)."""
    root = Path(output)
    values = [float(v) for v in occlusions.split(",")]
    if not summarise_only:
        run_all(root, values, seeds, generations, epochs, list(extra), progress)
    summary = summarise(load_results(root, values, seeds), root)
    command = "python tools/soft_label_study.py " + " ".join(a for a in sys.argv[1:] if a != "--summarise-only")
    text = render(summary, command)
    atomic_write_json(root / "summary.json", summary)
    (root / "summary.md").write_text(text)
    click.echo(text)
    if write_docs:
        plot(summary, PLOT)
        write_marked_block(DOC, "soft-label-study", text + f"\n![R@1 per generation]({PLOT.name})\n",
                           title="Do the soft region labels help?")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
