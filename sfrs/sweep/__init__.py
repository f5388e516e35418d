"""Sweeps: grids of training runs x seeds, resumable, summarised as mean ± std with figures
(``sfrs-sweep``).

    from sfrs.sweep import SweepSpec, TrainOptions, parse_grid, run_sweep
    spec = SweepSpec(axes=tuple(parse_grid(["optim.lr=0.001,0.01"])), seeds=(0, 1),
                     options=TrainOptions(generations=1, dataset="synthetic:tiny"))
    outcome = run_sweep(spec, Path("runs/lr_sweep"), command="...")
"""
from sfrs.sweep.grid import Configuration, GridAxis, configurations, parse_grid, parse_grid_entry, parse_seed_list
from sfrs.sweep.runner import SweepOutcome, run_sweep, threads_per_run
from sfrs.sweep.spec import PlannedRun, SweepSpec, TrainOptions, claim_output
from sfrs.sweep.summary import build_summary, finished, format_stat, recall_block, summarise_results

__all__ = [
    "Configuration", "GridAxis", "PlannedRun", "SweepOutcome", "SweepSpec", "TrainOptions", "build_summary",
    "claim_output", "configurations", "finished", "format_stat", "parse_grid", "parse_grid_entry",
    "parse_seed_list", "recall_block", "run_sweep", "summarise_results", "threads_per_run",
]
