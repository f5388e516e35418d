#!/usr/bin/env python
"""Self-supervised GeoPair terms on the synthetic city: alone, next to SARE, next to SFRS.

Every row trains the same schedule (2 generations x ``--epochs`` epochs of
``--queries`` queries, ``--tuples`` tuples per step, the default model) for each of
``--seeds`` seeds; only the loss terms differ:

- ``sare``: the hard SARE-ind term alone (soft weight 0 in every generation);
- ``<term>``: the self-supervised term alone (SARE weight 0: no hard-negative mining);
- ``sare+<term>``: SARE plus the term, weighted so that its starting value is about
  SARE's (see ``SSL_WEIGHTS``);
- ``sfrs``: SARE + soft region labels in generation 1;
- ``sfrs+<best>``: SFRS plus the term whose ``sare+<term>`` row has the best mean
  *validation* R@1 (never chosen on test).

Heads are those of ``configs/ssl_<term>.yaml``. Each run is an ordinary resumable run
folder under ``OUTPUT/<row>/seed<k>``: rerun the same command after an interruption.
Writes ``OUTPUT/summary.json`` and, with ``--write-docs``, its section of ``docs/experiments.md`` and
``docs/ssl_experiments.png``.

    python tools/ssl_experiments.py --output runs/ssl_experiments [--seeds 3] [--write-docs]
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

import click

from sfrs.config import load_config, load_yaml
from sfrs.sweep import finished  # noqa: F401  (the other experiment tools import it from here)
from sfrs.training import train
from sfrs.utils.io import atomic_write_json, write_marked_block

TERMS = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg")
#: weights that make each term's starting value about SARE's (~0.7 on the synthetic city).
SSL_WEIGHTS = {"simclr": 0.25, "moco": 0.25, "byol": 0.2, "simsiam": 0.2, "barlow_twins": 0.0125, "vicreg": 0.03}
NS = ("1", "5", "10")
REPO = Path(__file__).resolve().parents[1]


def term_overrides(term: str, weight: float) -> List[str]:
    options = load_yaml(REPO / "configs" / f"ssl_{term}.yaml")["loss"]["terms"][term]
    return [f"loss.terms.{term}.{key}={value}" for key, value in options.items() if key != "weight"] + \
        [f"loss.terms.{term}.weight={weight}"]


def schedule(epochs: int, queries: int, tuples: int, soft: bool) -> List[str]:
    return [f"train.generations.*.epochs={epochs}", f"train.queries_per_epoch={queries}",
            f"optim.tuples_per_step={tuples}", "train.tensorboard_examples=0",
            f"train.generations.1.soft_weight={0.5 if soft else 0}"]


def run_row(root: Path, name: str, overrides: List[str], seeds: int, common: List[str]) -> List[Dict]:
    results = []
    for seed in range(seeds):
        output = root / name / f"seed{seed}"
        if finished(output) is not None:
            results.append(finished(output))
            continue
        click.echo(f"== {name} seed {seed}")
        config = load_config(overrides=common + overrides + [f"seed={seed}"], generations=2)
        results.append(train(config, output, progress=False, log=lambda line: None))
    return results


def summarise(results: List[Dict]) -> Dict:
    final = [r["generations"][-1] for r in results]
    epochs = [e for r in results for e in r["epochs"]]

    def stats(values):
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    return {
        "seeds": len(results),
        **{f"{split}_R@{n}": stats([g[split][n] for g in final]) for split in ("val", "test") for n in NS},
        "epoch_seconds": stats([e["seconds"] for e in epochs]),
        "refresh_seconds": stats([e.get("refresh_seconds", 0.0) for e in epochs]),
    }


def render(summary: Dict[str, Dict], command: str, best: str, timed_apart: bool) -> str:
    timing_note = ("Times come from `--timing-output`: seed 0 of every row trained once more, one run after the other "
                   "on an otherwise idle machine (the seeds above may have shared the CPU)." if timed_apart else
                   "Times are those of the runs above.")
    lines = [
        "## Self-supervised GeoPair terms on the synthetic city",
        "",
        f"Command: `{command}`",
        "",
        "Each row: mean +- std over seeds of the final generation's Recall@N (val and test",
        "splits of `synthetic:small`), and the mean time per epoch with its descriptor-cache",
        "refresh + mining part (validation included in the epoch time). Same schedule for every",
        f"row; `sfrs+{best}` adds the term whose `sare+<term>` row has the best mean validation R@1.",
        timing_note,
        "",
        "| row | seeds | val R@1 | val R@5 | test R@1 | test R@5 | test R@10 | s / epoch | refresh s / epoch |",
        "|---|---:|---|---|---|---|---|---:|---:|",
    ]
    for name, s in summary.items():
        cells = [f"{s[k]['mean']:.1f} +- {s[k]['std']:.1f}" for k in ("val_R@1", "val_R@5", "test_R@1", "test_R@5", "test_R@10")]
        lines.append(f"| {name} | {s['seeds']} | " + " | ".join(cells)
                     + f" | {s['epoch_seconds']['mean']:.1f} | {s['refresh_seconds']['mean']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(summary: Dict[str, Dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 3.5))
    for offset, split in ((-0.2, "val"), (0.2, "test")):
        means = [summary[n][f"{split}_R@1"]["mean"] for n in names]
        stds = [summary[n][f"{split}_R@1"]["std"] for n in names]
        ax.bar([i + offset for i in range(len(names))], means, width=0.4, yerr=stds, capsize=3, label=f"{split} R@1")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("R@1 (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", required=True, type=click.Path(file_okay=False))
@click.option("--seeds", default=3, show_default=True)
@click.option("--epochs", default=2, show_default=True, help="Epochs of each of the 2 generations.")
@click.option("--queries", default=200, show_default=True, help="Training queries per epoch.")
@click.option("--tuples", default=8, show_default=True, help="Tuples (pairs) per step.")
@click.option("--write-docs", is_flag=True, help="Write docs/experiments.md and docs/ssl_experiments.png.")
@click.option("--only", help="Comma-separated rows to train now (e.g. sare+moco,sfrs), then stop without a "
                             "summary: several processes can share the rows; a run without --only collects them.")
@click.option("--timing-output", type=click.Path(file_okay=False),
              help="Time every row on seed 0 once more, sequentially, in this folder; the table's times come from there.")
def main(output: str, seeds: int, epochs: int, queries: int, tuples: int, write_docs: bool, only: str,
         timing_output: Optional[str]) -> None:
    root = Path(output)
    rows: Dict[str, List[str]] = {"sare": []}
    rows.update({term: ["loss.terms.hard.weight=0"] + term_overrides(term, 1.0) for term in TERMS})
    rows.update({f"sare+{term}": term_overrides(term, SSL_WEIGHTS[term]) for term in TERMS})
    plain, soft = schedule(epochs, queries, tuples, soft=False), schedule(epochs, queries, tuples, soft=True)
    if only:
        wanted = [name.strip() for name in only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in rows and name != "sfrs"]
        if unknown:
            raise click.BadParameter(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(rows)}, sfrs",
                                     param_hint="--only")
        for name in wanted:
            run_row(root, name, rows.get(name, []), seeds, soft if name == "sfrs" else plain)
        return
    summary = {name: summarise(run_row(root, name, extra, seeds, plain)) for name, extra in rows.items()}
    best = max(TERMS, key=lambda t: summary[f"sare+{t}"]["val_R@1"]["mean"])
    rows["sfrs"], rows[f"sfrs+{best}"] = [], term_overrides(best, SSL_WEIGHTS[best])
    for name in ("sfrs", f"sfrs+{best}"):
        summary[name] = summarise(run_row(root, name, rows[name], seeds, soft))
    if timing_output:  # every row once more, one after the other: times comparable across rows
        for name, extra in rows.items():
            timed = run_row(Path(timing_output), name, extra, 1, soft if name.startswith("sfrs") else plain)
            summary[name] = {**summary[name], **{k: v for k, v in summarise(timed).items() if k.endswith("_seconds")}}
    atomic_write_json(root / "summary.json", {"best_on_val": best, "rows": summary})
    command = "python tools/ssl_experiments.py " + " ".join(sys.argv[1:])
    text = render(summary, command, best, bool(timing_output))
    click.echo(text)
    if write_docs:
        plot(summary, REPO / "docs" / "ssl_experiments.png")
        write_marked_block(REPO / "docs" / "experiments.md", "ssl", text + "\n![R@1 per row](ssl_experiments.png)\n",
                           "Experiments")


if __name__ == "__main__":
    main()
