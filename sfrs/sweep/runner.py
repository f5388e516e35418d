"""Running a sweep: every planned run not finished yet (a killed one resumes where its
checkpoint stopped), one after the other in this process or ``parallel`` at a time as
``sfrs-train`` subprocesses; optionally each finished run's ``best.pt`` on every data set
under a datasets root (:func:`sfrs.reports.run_all`); the summary, tables and figures
rewritten after every finished run.

A run that fails is reported with its name and log and the others go on; the caller
learns of it from :attr:`SweepOutcome.failed`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from sfrs.config import load_yaml
from sfrs.config.build import parse_yaml, dump_yaml
from sfrs.errors import ConfigError, SfrsError
from sfrs.sweep.plots import plot_summary
from sfrs.sweep.spec import PlannedRun, SweepSpec, claim_output
from sfrs.sweep.summary import build_summary, finished, render_csv, render_markdown
from sfrs.utils.io import atomic_write_json, atomic_write_text

#: the process a parallel sweep starts for each run; ``sfrs-train``'s arguments follow
TRAIN_COMMAND: Tuple[str, ...] = (sys.executable, "-m", "sfrs.cli.train_worker")
#: where a run trained in a subprocess writes what it printed
CONSOLE_LOG = "console.log"
#: where an in-process run's unexpected error is written with its traceback
ERROR_LOG = "sweep_error.log"
TRANSFER_FOLDER = "transfer"


@dataclass
class SweepOutcome:
    """What an invocation did: run folders trained now, skipped (finished before) and
    failed ({folder: one-line error naming the log}); the summary written last."""

    trained: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_run(parallel: int) -> int:
    """Each of ``parallel`` runs' share of the cores (at least 1)."""
    return max(1, cpu_count() // max(1, parallel))


def check_finished_config(run: PlannedRun, folder: Path) -> None:
    """A finished run is reused only when its config.yaml is the planned configuration.

    Raises:
        ConfigError: it is not (e.g. a ``--config`` file changed since the run), naming the file.
    """
    path = folder / "config.yaml"
    if path.is_file() and load_yaml(path) != parse_yaml(dump_yaml(run.config)):
        raise ConfigError(f"{path}: the finished run's configuration is not the one this sweep plans for it "
                          "(a config file changed since?); move the run away or give another --output")


class _Sweep:
    """The state of one invocation: the runs, what happened, and the outputs."""

    def __init__(self, spec: SweepSpec, output: Path, command: str, runs: List[PlannedRun],
                 log: Callable[[str], None], device: str, trust_checkpoint: bool) -> None:
        self.spec, self.output, self.command, self.runs = spec, output, command, runs
        self.log, self.device, self.trust_checkpoint = log, device, trust_checkpoint
        self.outcome = SweepOutcome()
        self.transfer: Optional[Dict[str, Dict[str, Dict[str, float]]]] = {} if spec.transfer else None

    def folder(self, run: PlannedRun) -> Path:
        return self.output / run.folder

    def fail(self, run: PlannedRun, message: str) -> None:
        self.outcome.failed[run.folder] = message
        self.log(f"{run.name}: failed: {message}")

    def finish(self, run: PlannedRun) -> None:
        """After a run is complete: its transfer evaluation, then the summary."""
        results = finished(self.folder(run))
        if results is not None:
            generation = results["generations"][-1] if results.get("generations") else {}
            self.log(f"{run.name}: done; final val R@1 {generation.get('val', {}).get('1', float('nan')):.1f}, "
                     f"test R@1 {generation.get('test', {}).get('1', float('nan')):.1f}")
            if self.transfer is not None:
                self.evaluate_transfer(run)
        self.write_summary()

    def evaluate_transfer(self, run: PlannedRun) -> None:
        """best.pt on every data set under the transfer root, in ``<run>/transfer/`` (kept
        and reused when it is there for this root and model)."""
        import json

        from sfrs.reports import EvalAllOptions, run_all

        folder, report = self.folder(run), self.folder(run) / TRANSFER_FOLDER / "report.json"
        checkpoint = folder / "best.pt"
        data = None
        if report.is_file():
            try:
                data = json.loads(report.read_text())
            except ValueError:
                data = None
        if not (data and data.get("datasets_root") == str(self.spec.transfer)
                and data.get("checkpoint") == str(checkpoint) and data.get("complete_sweep_evaluation")):
            options = EvalAllOptions(device=self.device, progress=False, batch_size=run.config.data.batch_size,
                                     num_workers=run.config.data.num_workers, trust_checkpoint=self.trust_checkpoint)
            try:
                summary = run_all(checkpoint, self.spec.transfer, folder / TRANSFER_FOLDER, options,
                                  log=lambda line: None)
            except SfrsError as exc:
                self.fail(run, f"transfer evaluation: {' '.join(str(exc).split())}")
                return
            data = json.loads(report.read_text())
            data["complete_sweep_evaluation"] = True  # a killed evaluation is not mistaken for a done one
            atomic_write_json(report, data)
            for name, error in summary.failed.items():
                self.log(f"{run.name}: transfer to {name} failed: {error}")
        self.transfer[run.folder] = {name: {str(n): float(v) for n, v in result.get("recall", {}).items()}
                                     for name, result in data.get("results", {}).items()}

    def write_summary(self) -> None:
        summary = build_summary(self.output, self.runs, varied=[a.key for a in self.spec.axes],
                                seeds=self.spec.seeds, command=self.command, transfer=self.transfer,
                                failed=self.outcome.failed)
        atomic_write_json(self.output / "summary.json", summary)
        atomic_write_text(self.output / "summary.csv", render_csv(summary))
        figures = plot_summary(summary, self.output)
        atomic_write_text(self.output / "summary.md", render_markdown(summary, figures))
        self.outcome.summary = summary


def run_sweep(
    spec: SweepSpec,
    output: Path,
    *,
    command: str,
    parallel: int = 1,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    trust_checkpoint: bool = False,
    train_command: Sequence[str] = TRAIN_COMMAND,
) -> SweepOutcome:
    """Plan and validate every run, tie ``output`` to the sweep, then train what is not
    finished and summarise.

    Args:
        command: the command line, recorded in sweep.json and the summary.
        parallel: runs at a time; above 1 each is a ``train_command`` subprocess given
            ``sfrs-train``'s arguments, with its share of the cores as its thread count
            and its output in ``<run>/console.log``.
        device: the device of every run (``sfrs-train --device``).
    Raises:
        ConfigError: a bad grid value or combination, or ``output`` holds another sweep;
            nothing has been trained then.
    """
    from sfrs.data import open_dataset

    output = Path(output)
    runs = spec.plan()
    for dataset, images_root in dict.fromkeys((r.config.data.dataset, r.config.data.images_root) for r in runs):
        open_dataset(dataset, "train", images_root)  # made or checked once, before runs need it
    claim_output(output, spec, command)
    sweep = _Sweep(spec, output, command, runs, log, device, trust_checkpoint)
    pending = []
    for run in runs:
        if finished(sweep.folder(run)) is not None:
            check_finished_config(run, sweep.folder(run))
            sweep.outcome.skipped.append(run.folder)
        else:
            pending.append(run)
    if sweep.transfer is not None:
        for run in runs:
            if run.folder in sweep.outcome.skipped:
                sweep.evaluate_transfer(run)
    sweep.write_summary()
    log(f"sweep: {len(runs)} runs ({len(runs) // len(spec.seeds)} configurations x {len(spec.seeds)} seeds), "
        f"{len(sweep.outcome.skipped)} finished before, {len(pending)} to train"
        + (f", {parallel} at a time with {threads_per_run(parallel)} thread(s) each" if parallel > 1 else ""))
    bar = tqdm(total=len(runs), initial=len(sweep.outcome.skipped), desc="sweep runs", unit="run",
               disable=not progress, dynamic_ncols=True)
    say = sweep.log

    def bar_log(line: str) -> None:
        (bar.write if progress else say)(line)

    sweep.log = bar_log
    try:
        if parallel > 1:
            _run_parallel(sweep, pending, parallel, train_command, bar)
        else:
            _run_in_process(sweep, pending, bar)
    finally:
        bar.close()
        sweep.log = say
    return sweep.outcome


def _run_in_process(sweep: _Sweep, pending: Sequence[PlannedRun], bar: tqdm) -> None:
    import torch

    from sfrs.training import train

    if sweep.spec.options.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    for run in pending:
        bar.set_postfix_str(run.name)
        folder = sweep.folder(run)
        try:
            train(run.config, folder, device=sweep.device, progress=False, log=lambda line: None,
                  trust_checkpoint=sweep.trust_checkpoint)
        except SfrsError as exc:
            sweep.fail(run, f"{' '.join(str(exc).split())} (log: {folder / 'train.log'})")
        except Exception:  # a bug in one run: recorded with its traceback, the others still run
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ERROR_LOG).write_text(traceback.format_exc())
            last = traceback.format_exc().strip().splitlines()[-1]
            sweep.fail(run, f"{last} (log: {folder / ERROR_LOG})")
        else:
            sweep.outcome.trained.append(run.folder)
        sweep.finish(run)
        bar.update(1)


def _last_error_line(log_path: Path) -> str:
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1]


def _run_parallel(sweep: _Sweep, pending: Sequence[PlannedRun], parallel: int, train_command: Sequence[str],
                  bar: tqdm) -> None:
    threads = threads_per_run(parallel)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    queue = list(pending)
    running: List[Tuple[PlannedRun, subprocess.Popen, Any]] = []
    try:
        while queue or running:
            while queue and len(running) < parallel:
                run = queue.pop(0)
                folder = sweep.folder(run)
                folder.mkdir(parents=True, exist_ok=True)
                console = open(folder / CONSOLE_LOG, "a")
                argv = [*train_command, *run.train_argv(sweep.spec.options, sweep.output), "--no-progress",
                        "--device", sweep.device] + (["--trust-checkpoint"] if sweep.trust_checkpoint else [])
                console.write(f"$ {' '.join(argv)}\n")
                console.flush()
                running.append((run, subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, env=env),
                                console))
            time.sleep(0.2)
            for item in [item for item in running if item[1].poll() is not None]:
                running.remove(item)
                run, process, console = item
                console.close()
                log_path = sweep.folder(run) / CONSOLE_LOG
                if process.returncode == 0 and finished(sweep.folder(run)) is not None:
                    sweep.outcome.trained.append(run.folder)
                else:
                    sweep.fail(run, f"exit code {process.returncode}: {_last_error_line(log_path)} (log: {log_path})")
                sweep.finish(run)
                bar.update(1)
    finally:  # interrupted: the runs started here stop too (each resumes on the next invocation)
        for _, process, console in running:
            process.terminate()
        for _, process, console in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            console.close()
