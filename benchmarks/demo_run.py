"""End-to-end time of the default demo: ``sfrs-train --generations 4`` on the synthetic city.

Runs the command as a user would (a fresh process, the synthetic city already in the
cache so that its one-off generation is not counted), measures wall time and peak memory
of the process, and writes them with the per-generation Recall@N table to
docs/benchmarks.md.

Usage (from the repository root):
    python benchmarks/demo_run.py [--output runs/demo] [--no-write] [-- extra sfrs-train args]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_description, write_block  # noqa: E402
from sfrs.training.report import generation_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", default="runs/demo_benchmark")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("extra", nargs="*", help="extra sfrs-train arguments (after --)")
    args = parser.parse_args()

    from sfrs.data.synthetic import ensure_synthetic

    ensure_synthetic("small", progress=False)
    output = Path(args.output)
    if output.exists():
        shutil.rmtree(output)
    sfrs_train = str(Path(sys.executable).with_name("sfrs-train"))
    command = [sfrs_train, "--generations", "4", "--output", str(output), "--no-progress"] + args.extra
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"demo failed:\n{done.stderr[-3000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    results = json.loads((output / "results.json").read_text())
    shown = "sfrs-train --generations 4" + (" " + " ".join(args.extra) if args.extra else "")
    lines = [
        "## The default demo end to end",
        "",
        "Command: `python benchmarks/demo_run.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "") + f"` (runs `{shown}`)  ",
        f"Machine: {machine_description()}.",
        "",
        f"Wall time {wall / 60:.1f} min (synthetic city already generated), peak memory {peak_mb:,.0f} MB.",
        "",
        *generation_table(results["generations"]),
        "",
        f"Best on {results['best']['metric']}: generation {results['best']['generation']}, epoch {results['best']['epoch']}.",
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        write_block("demo_run", block)


if __name__ == "__main__":
    main()
