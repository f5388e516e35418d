#!/usr/bin/env python
"""Do SFRS's soft region labels help? SFRS against its hard-loss-only twin over seeds and
across the synthetic city's occlusion knob.

Every run trains the same schedule: ``--generations`` generations of ``--epochs`` epochs
each (generation 0 as long as the others, so that "later generations train longer" cannot
be the effect), the default model and mining. Two arms differ only in the soft weight:

- ``sfrs``: the configured soft weights (0.5 from generation 1, teacher temperatures
  0.07 / 0.06 / 0.05);
- ``hard_only``: ``train.generations.*.soft_weight=0``: same epochs, initialisation,
  seed, data order and region negatives;
- ``sfrs_tau0.02`` (with ``--arms``): SFRS with its labels sharpened by a teacher
  temperature of 0.02 (a value read from the offline label entropies, not from recall).

Cities: ``synthetic:small:occlusion=F`` for each ``--occlusion`` F (a vehicle next to the
camera hides that fraction of every query; 0 is the default city). Each run is an ordinary
resumable run folder ``OUTPUT/occlusion<F>/<arm>/seed<k>``: rerun the command after an
interruption. Nothing is selected on the test split: the tables report the final
generation and every generation as trained.

    python tools/soft_label_study.py --output runs/soft_label_study --generations 3 --epochs 3 \
        [--arms sfrs,hard_only,sfrs_tau0.02] [--seeds 3] [--write-docs]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import click
import numpy as np

from sfrs.config import load_config
from sfrs.reports import statistic
from sfrs.sweep import finished
from sfrs.training import train
from sfrs.utils.io import atomic_write_json, write_marked_block

#: arm -> overrides; ``sfrs_tau0.02``: the labels sharpened by a lower teacher temperature
#: in every labelled generation (chosen from the label entropies below, not from recall).
ARMS = {
    "sfrs": [],
    "hard_only": ["train.generations.*.soft_weight=0"],
    "sfrs_tau0.02": [f"train.generations.{g}.teacher_temperature=0.02" for g in (1, 2, 3)],
}
LABELS = {"sfrs": "SFRS", "hard_only": "hard-only", "sfrs_tau0.02": "SFRS, teacher tau 0.02"}
DEFAULT_ARMS = "sfrs,hard_only"
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


def run_all(root: Path, occlusions: Sequence[float], arms: Sequence[str], seeds: int, generations: int,
            epochs: int, extra: Sequence[str], progress: bool) -> None:
    for seed in range(seeds):  # seed-major: a partial study already has every cell
        for occlusion in occlusions:
            for arm in arms:
                overrides = ARMS[arm]
                output = run_folder(root, occlusion, arm, seed)
                if finished(output) is not None:
                    continue
                click.echo(f"== occlusion {occlusion:g} {arm} seed {seed}")
                config = load_config(overrides=[f"data.dataset={dataset(occlusion)}", f"seed={seed}",
                                                *overrides, *extra], generations=generations, epochs=epochs)
                train(config, output, progress=progress, log=lambda line: None)


def fmt(cell: Dict[str, float], signed: bool = False) -> str:
    spread = "n/a" if cell["std"] is None else f"{cell['std']:.1f}"
    return f"{cell['mean']:{'+' if signed else ''}.1f} +- {spread}"


def load_results(root: Path, occlusions: Sequence[float], seeds: int) -> Dict[float, Dict[str, List[Dict]]]:
    """Complete runs only: {occlusion: {arm: [results per seed]}} for the arms with a run
    at that occlusion; a seed counts only when every one of them finished it, so that
    differences stay paired."""
    out: Dict[float, Dict[str, List[Dict]]] = {}
    for occlusion in occlusions:
        arms = [arm for arm in ARMS if (root / f"occlusion{occlusion:g}" / arm).is_dir()]
        cells = [{arm: finished(run_folder(root, occlusion, arm, seed)) for arm in arms} for seed in range(seeds)]
        cells = [c for c in cells if all(r is not None for r in c.values())]
        out[occlusion] = {arm: [c[arm] for c in cells] for arm in arms}
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
        seeds = len(arms.get("hard_only", []))
        if seeds == 0:
            continue
        # generation g of a run does not depend on how many follow it: runs of a longer
        # schedule count with their first generations
        generations = min(len(r["generations"]) for runs in arms.values() for r in runs)
        rows = []
        for g in range(generations):
            row: Dict = {"generation": g, "arms": {}}
            for arm, runs in arms.items():
                cell: Dict = {f"{split}_R@{n}": statistic(r["generations"][g][split][n] for r in runs)
                              for split in SPLITS for n in NS}
                for split in SPLITS:
                    cell[f"diff_{split}_R@1"] = statistic(
                        a["generations"][g][split]["1"] - b["generations"][g][split]["1"]
                        for a, b in zip(runs, arms["hard_only"]))
                stats = [r["generations"][g].get("stats", {}) for r in runs]
                for key in ("soft/teacher_entropy", "soft/uniform_entropy", "soft/teacher_spread", "soft/agreement"):
                    if stats and all(key in st for st in stats):
                        cell[key] = statistic(st[key] for st in stats)
                if g >= 1 and arm != "hard_only":
                    offline = [label_entropy_by_temperature(run_folder(root, occlusion, arm, seed), g, 5)
                               for seed in range(seeds)]
                    cell["offline"] = {key: statistic(o[key] for o in offline) for key in offline[0]}
                row["arms"][arm] = cell
            rows.append(row)
        summary[f"{occlusion:g}"] = {"seeds": seeds, "dataset": dataset(occlusion), "generations": rows,
                                     "minutes": {arm: statistic(r["seconds"] / 60 for r in runs)
                                                 for arm, runs in arms.items()}}
    return summary


def render(summary: Dict, command: str) -> str:
    lines = ["## Seeds and occlusion: SFRS against its hard-only twin", "",
             f"Command: `{command}`", "",
             "Every arm trains the same schedule (every generation, generation 0 included, the same number of",
             "epochs; each generation re-initialised; default model, mining and hard-negative memory); arms",
             "differ only in the soft term: weight 0.5 from generation 1 (SFRS, teacher temperatures 0.07 /",
             "0.06), 0 (hard-only), or teacher temperature 0.02 where that arm ran. Cells: mean +- std over",
             "seeds of each generation's final model; the last column is the arm minus hard-only for the same",
             "seed (paired). Nothing is selected on test.", ""]
    for key, block in summary.items():
        lines += [f"### `{block['dataset']}` (occlusion {key}), {block['seeds']} seed(s)", "",
                  "| gen | split | arm | R@1 | R@5 | R@10 | R@1 minus hard-only |", "|---|---|---|---|---|---|---|"]
        for row in block["generations"]:
            for split in SPLITS:
                for arm, cell in row["arms"].items():
                    diff = "" if arm == "hard_only" else fmt(cell[f"diff_{split}_R@1"], signed=True)
                    lines.append(f"| {row['generation']} | {split} | {LABELS[arm]} | {fmt(cell[f'{split}_R@1'])} | "
                                 f"{fmt(cell[f'{split}_R@5'])} | {fmt(cell[f'{split}_R@10'])} | {diff} |")
        minutes = ", ".join(f"{LABELS[arm]} {fmt(m)}" for arm, m in block["minutes"].items())
        lines += ["", f"Minutes per run (wall time; the runs shared the CPU with other jobs): {minutes}.", ""]
    lines += ["### How informative are the labels?", "",
              "During training (means over each generation's steps): the teacher's label entropy against the",
              "entropy of uniform labels over the same entries (5 difficult positives x 9 regions: log 45 =",
              "3.81 nats), the range of the teacher's cosine similarities over those entries, that range over",
              "the teacher temperature (the spread of the label logits), and how often the student's top entry",
              "is the teacher's. Offline, from the cached label files (per query the 5 labelled positives least",
              "similar to it standing in for the student's picks): the same entropy ratio had the labels been",
              "sharpened with another teacher temperature, and where the similarity range comes from (the",
              "regions of one positive, or the global descriptors of different positives).", "",
              "| occlusion | arm | gen | entropy / uniform | similarity range | range / tau | agreement | "
              + " | ".join(f"ratio at tau {t:g}" for t in TEMPERATURES) + " | range within a positive | "
              "range across positives |",
              "|---|---|---|---|---|---|---|" + "---|" * len(TEMPERATURES) + "---|---|"]
    for key, block in summary.items():
        for row in block["generations"]:
            for arm, cell in row["arms"].items():
                if "soft/teacher_entropy" not in cell:
                    continue
                ratio = cell["soft/teacher_entropy"]["mean"] / cell["soft/uniform_entropy"]["mean"]
                tau = 0.02 if arm == "sfrs_tau0.02" else {1: 0.07, 2: 0.06, 3: 0.05}[row["generation"]]
                spread = cell["soft/teacher_spread"]["mean"]
                off = cell["offline"]
                lines.append(f"| {key} | {LABELS[arm]} | {row['generation']} | {ratio:.3f} | {spread:.3f} | "
                             f"{spread / tau:.2f} | {cell['soft/agreement']['mean']:.2f} | "
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
            for arm in rows[0]["arms"]:
                mean = np.array([row["arms"][arm][f"{split}_R@1"]["mean"] for row in rows])
                std = np.array([row["arms"][arm][f"{split}_R@1"]["std"] or 0.0 for row in rows])
                ax.plot(gens, mean, marker="o", label=LABELS[arm])
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
@click.option("--arms", default=DEFAULT_ARMS, show_default=True,
              help=f"Comma-separated arms to train: {', '.join(ARMS)}.")
@click.option("--seeds", default=3, show_default=True)
@click.option("--generations", default=4, show_default=True)
@click.option("--epochs", default=3, show_default=True, help="Epochs of every generation.")
@click.option("--set", "extra", multiple=True, help="Extra config override for every run.")
@click.option("--progress/--no-progress", default=False)
@click.option("--summarise-only", is_flag=True, help="Only tabulate the runs that finished.")
@click.option("--write-docs", is_flag=True, help="Write the section of docs/soft_label_ablation.md and its plot.")
def main(output: str, occlusions: str, arms: str, seeds: int, generations: int, epochs: int, extra: Sequence[str],
         progress: bool, summarise_only: bool, write_docs: bool) -> None:
    """Train both arms for every occlusion and seed (resumable), then write
    OUTPUT/summary.json and OUTPUT/summary.md (and with --write-docs the docs section)."""
    root = Path(output)
    values = [float(v) for v in occlusions.split(",")]
    chosen = [arm.strip() for arm in arms.split(",") if arm.strip()]
    unknown = [arm for arm in chosen if arm not in ARMS]
    if unknown or "hard_only" not in chosen and not summarise_only and not (root / f"occlusion{values[0]:g}" / "hard_only").is_dir():
        raise click.UsageError(f"--arms: unknown {unknown} (choose among {', '.join(ARMS)}); hard_only is the reference")
    if not summarise_only:
        run_all(root, values, chosen, seeds, generations, epochs, list(extra), progress)
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
