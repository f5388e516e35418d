"""Mining-cache refresh and evaluation with 1 vs 2 processes (torchrun, gloo, CPU).

Under torchrun every process encodes its shard of the images and the rows are gathered
once (``sfrs.retrieval.extract.extract_descriptors_sharded``); the search runs once, on
the main process. This script times, on the ``medium`` synthetic city:

- the descriptor-cache refresh of training (train database + all train queries),
- a validation evaluation (extraction of val database + queries, then faiss search),

with 1 process (torch threads = 1 and = all cores) and with 2 processes (1 thread each,
as torchrun sets ``OMP_NUM_THREADS=1``), side by side in one run.

Usage (from the repository root):
    python benchmarks/distributed_extraction.py [--size medium] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def worker(size: str, result: str) -> None:
    import torch

    from sfrs import distributed
    from sfrs.config import Config
    from sfrs.data import open_dataset
    from sfrs.models import build_network
    from sfrs.retrieval import extract_descriptors_sharded, recall_report

    distributed.setup("cpu")
    torch.manual_seed(0)
    model = build_network(Config().model).eval()
    train = open_dataset(f"synthetic:{size}", "train")
    val = open_dataset(f"synthetic:{size}", "val")

    def extract(paths):
        return extract_descriptors_sharded(model, paths, model.transform(), batch_size=32, progress=False)

    extract(train.database_paths[:64])  # warm-up: kernels, allocator, page cache
    distributed.barrier()
    start = time.perf_counter()
    extract(train.database_paths)
    extract(train.query_paths)
    distributed.barrier()
    refresh = time.perf_counter() - start
    start = time.perf_counter()
    database, queries = extract(val.database_paths), extract(val.query_paths)
    report = recall_report(val, database, queries)[0] if distributed.is_main() else None
    distributed.barrier()
    evaluation = time.perf_counter() - start
    if distributed.is_main():
        Path(result).write_text(json.dumps({
            "refresh_s": refresh, "eval_s": evaluation, "recall": report["recall"],
            "images_refresh": train.num_database + train.num_queries,
            "images_eval": val.num_database + val.num_queries,
        }))
    distributed.teardown()


def run(processes: int, threads: int, size: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "r.json")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
        script = [str(Path(__file__).resolve()), "--worker", "--size", size, "--result", result]
        if processes == 1:
            command = [sys.executable] + script
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={processes}"] + script
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
        return json.loads(Path(result).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="medium")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args.size, args.result)
        return

    from benchmarks.common import machine_description, write_block
    from sfrs.data.synthetic import ensure_synthetic

    ensure_synthetic(args.size, progress=False)
    cores = os.cpu_count() or 1
    variants = [("1 process, 1 thread", 1, 1), (f"1 process, {cores} threads", 1, cores),
                ("2 processes (torchrun), 1 thread each", 2, 1)]
    results = {name: run(p, t, args.size) for name, p, t in variants}
    base = results[variants[1][0]]
    first = next(iter(results.values()))
    lines = [
        "## Sharded extraction under torchrun: 1 vs 2 processes",
        "",
        "Command: `python benchmarks/distributed_extraction.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + "`  ",
        f"Machine: {machine_description()}.",
        "",
        f"Workload: synthetic:{args.size}, untrained default model (small CNN + NetVLAD-16, 96x128; timing only, hence the low recall). Cache refresh = "
        f"{first['images_refresh']:,} training images; evaluation = {first['images_eval']:,} validation images + "
        "exact faiss search. Each variant in fresh processes after a warm-up batch; gloo backend.",
        "",
        "| variant | cache refresh (s) | evaluation (s) | refresh speed-up vs 1 process, all threads | val R@1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['refresh_s']:.1f} | {r['eval_s']:.1f} | {base['refresh_s'] / r['refresh_s']:.2f}x | {r['recall']['1']:.1f} |")
    same = all(r["recall"] == first["recall"] for r in results.values())
    lines += ["", ("Recall@N is identical in every variant." if same else
                   "Recall@N differs between variants (float rounding of gathered descriptors changed a ranking).")
              + f" Two processes share the machine's {cores} cores with each other, so their gain is bounded by "
              "how well one multi-threaded process already keeps the cores busy."]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("distributed_extraction", block)


if __name__ == "__main__":
    main()
