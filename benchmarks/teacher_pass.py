"""The teacher pass and the student's difficult-positive picking, on the synthetic city.

SFRS labels image-to-region similarities with the previous generation (the teacher).
``sfrs`` runs the teacher once per generation and caches its labels in HDF5. By default
(the reference's selection) it labels *every* positive within the training radius, so
that the current student can pick its difficult positives among them at every cache
refresh; the alternative labels only the difficult positives the teacher picks itself.
This script measures, side by side in one run on the same teacher weights:

- the teacher pass (time, peak memory over the baseline, label cache size) in both modes;
- what the student's picking adds at each refresh (feature-nearest candidates +
  k-reciprocal re-ranking over every training query + database, for all queries).

Usage (from the repository root):
    python benchmarks/teacher_pass.py [--size medium] [--no-write]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import machine_description, memory_probe, write_block  # noqa: E402
from sfrs.config import load_config  # noqa: E402
from sfrs.training.difficult import labelled_candidates, nearest_candidates, pick_difficult_positives  # noqa: E402
from sfrs.training.initialise import initial_network  # noqa: E402
from sfrs.training.run import TrainingRun  # noqa: E402
from sfrs.training.teacher import teacher_labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="medium", help="synthetic city size")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    base = load_config(overrides=[f"data.dataset=synthetic:{args.size}", "train.tensorboard_examples=0"])
    rows, labels_by_mode, runs = [], {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for by in ("student", "teacher"):
            config = dataclasses.replace(base, mining=dataclasses.replace(base.mining, difficult_positives_by=by))
            run = TrainingRun(config, Path(folder) / by, device=torch.device("cpu"), progress=False, log=lambda _: None)
            run.paths.make()
            teacher = initial_network(run)  # k-means initialised: a realistic, if untrained, teacher
            teacher.save(run.paths.generation_final(0))
            baseline, peak, method = memory_probe()
            started = time.perf_counter()
            labels = teacher_labels(run, 1, config.train.generations[1])
            seconds = time.perf_counter() - started
            labelled = int((labels.positive_ids >= 0).sum())
            rows.append((by, seconds, peak() - baseline, labels.similarities.nbytes,
                         run.paths.soft_labels(1).stat().st_size, labelled))
            labels_by_mode[by], runs[by] = labels, run

        # what the student's picking adds at each refresh, for every training query at once
        run, labels, mining = runs["student"], labels_by_mode["student"], base.mining
        ts, network = run.training_set, initial_network(run)
        started = time.perf_counter()
        database = run.extract(network, run.train_split.database_paths, "")
        encode_database = time.perf_counter() - started
        started = time.perf_counter()
        queries = run.extract(network, run.kept_query_paths, "")
        encode_queries = time.perf_counter() - started
        started = time.perf_counter()
        candidates = nearest_candidates(queries, database,
                                        labelled_candidates(labels, np.arange(ts.num_queries)), mining.positive_candidates)
        nearest = time.perf_counter() - started
        started = time.perf_counter()
        pick_difficult_positives(
            candidates, keep=mining.difficult_positives, rerank=True, probes=np.arange(ts.num_queries), query_descriptors=queries,
            database_descriptors=database, k1=mining.rerank_k1, k2=mining.rerank_k2, lam=mining.rerank_lambda,
            distance=mining.rerank_distance,
        )
        rerank = time.perf_counter() - started

    split = run.train_split
    lines = [
        "## Teacher pass and difficult-positive picking",
        "",
        "Command: `python benchmarks/teacher_pass.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + "`  ",
        f"Machine: {machine_description()}.",
        "",
        f"Data: `synthetic:{args.size}` train, {split.num_database:,} database images, {ts.num_queries:,} kept queries "
        f"({np.mean([len(p) for p in ts.positives]):.1f} positives within {base.data.train_positive_radius:g} m per query on "
        f"average); model {base.model.backbone} + {base.model.head} ({network.head_dim:,}-d), input "
        f"{base.model.input_size[0]}x{base.model.input_size[1]}; {mining.difficult_positives} difficult positives of "
        f"{mining.positive_candidates} candidates. Peak memory over the baseline by {method}.",
        "",
        "| teacher labels | positives labelled | teacher pass (s) | peak memory (MB) | labels in memory (MB) | HDF5 file (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"student": "every positive (student picks at each refresh; reference)",
             "teacher": "the teacher's difficult positives only (option)"}
    for by, seconds, memory, nbytes, size, labelled in rows:
        lines.append(f"| {names[by]} | {labelled:,} | {seconds:.1f} | {memory:,.0f} | {nbytes / 2**20:.2f} | {size / 2**20:.2f} |")
    lines += [
        "",
        "At each cache refresh the student's picking adds: encoding every kept training query "
        f"({encode_queries:.1f} s; the database takes {encode_database:.1f} s and is encoded anyway), the "
        f"feature-nearest candidates ({nearest:.2f} s) and k-reciprocal re-ranking over the joint set of "
        f"{ts.num_queries + split.num_database:,} items ({rerank:.2f} s), for all {ts.num_queries:,} queries.",
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("teacher_pass", block)


if __name__ == "__main__":
    main()
