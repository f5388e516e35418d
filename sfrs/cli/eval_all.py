"""``sfrs-eval-all`` (also ``python tools/eval_all.py``): one checkpoint on every data set
under a datasets root; one report for all.

    sfrs-eval-all --checkpoint runs/X/best.pt --datasets-root /data --output eval_all/
    sfrs-eval-all --checkpoint best.pt --datasets-root /data --datasets pitts30k,tokyo247,my_city \\
        --pca 4096 --half --visualize 8 --compare

Data sets are discovered with ``sfrs.data.find_datasets`` (known benchmarks and any other
folder or .mat file a reader opens) and evaluated as ``sfrs-eval`` evaluates them: known
benchmarks with their conventions (radius, query resizing, Tokyo 24/7 spatial NMS), others
with the default protocol, unless --threshold, --nms/--no-nms, --query-resize or
--no-query-resize override them; --test-method, --image-size, --resize, --rerank,
--precision and --channels-last apply to every data set, as in sfrs-eval; see ``sfrs/reports/transfer.py`` for the outputs.
Descriptors are streamed to ``OUTPUT/descriptors/``: rerun the same command after an
interruption and finished extraction is reused.

Exit code: 0 when every data set found was evaluated; 2 when any failed (each failure is
one ``eval_all: error: <dataset>: ...`` line on stderr, and the report still holds the
others) or when nothing could run (bad checkpoint, root, --datasets, --pca). Requested
data sets that are not found are listed as skipped and do not change the exit code.
"""
from __future__ import annotations

import sys
from typing import Optional

import click

from sfrs.cli.common import (
    DEBUG_OPTION,
    TRUST_CHECKPOINT_OPTION,
    build_test_time,
    protocol_options,
    query_resize_override,
    report_errors,
    resolve_device,
    test_time_options,
    version_option,
)

#: the prefix of error lines; the name the tool had as a script, which logs and scripts may match
COMMAND = "eval_all"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="Model or training checkpoint.")
@click.option("--datasets-root", required=True, type=click.Path(file_okay=False), help="Folder holding the benchmarks.")
@click.option("--datasets", help="Comma-separated benchmark names, folder names under the root or paths "
                                 "(default: every data set found under the root).")
@click.option("--output", default="eval_all", show_default=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--index", "index_spec", help="faiss index factory string: Flat (exact, default), IVF1024,Flat, HNSW32 ...")
@click.option("--half", is_flag=True, help="Store descriptors as float16.")
@click.option("--pca", "pca_dim", type=int, help="PCA-whitening to DIM, fitted once on the checkpoint's training data.")
@click.option("--visualize", type=int, default=0, show_default=True, help="Queries per example/failure grid (0 = none).")
@click.option("--compare", is_flag=True, help="Also plot our R@1 next to published numbers.")
@click.option("--msls-protocol", type=click.Choice(["official", "all"]), default="official", show_default=True,
              help="MSLS validation queries: official 740 or all.")
@click.option("--threshold", type=float, help="Positive radius in metres for every data set (default: each one's convention).")
@protocol_options
@test_time_options
@click.option("--batch-size", type=int, help="Images per extraction batch.")
@click.option("--num-workers", type=int, help="DataLoader workers.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@TRUST_CHECKPOINT_OPTION
@DEBUG_OPTION
@version_option("sfrs-eval-all")
@report_errors(COMMAND)
def main(
    checkpoint: str, datasets_root: str, datasets: Optional[str], output: str, index_spec: Optional[str],
    half: bool, pca_dim: Optional[int], visualize: int, compare: bool, msls_protocol: str,
    threshold: Optional[float], nms: Optional[bool], query_resize: Optional[int], no_query_resize: bool,
    test_method: str, image_size: Optional[str], resize: Optional[str], rerank: bool, rerank_top: int,
    rerank_k1: int, rerank_k2: int, rerank_lambda: float, precision: Optional[str], channels_last: bool,
    batch_size: Optional[int], num_workers: Optional[int], device: str,
    no_progress: bool, debug: bool, trust_checkpoint: bool,
) -> None:
    """Evaluate CHECKPOINT on every data set under --datasets-root; write report.md/csv/json and plots."""
    from sfrs.reports import EvalAllOptions, run_all

    given = {
        "datasets": tuple(p.strip() for p in datasets.split(",") if p.strip()) if datasets else None,
        "index": index_spec, "pca_dim": pca_dim, "threshold": threshold, "nms": nms,
        "query_resize": query_resize_override(query_resize, no_query_resize),
        "batch_size": batch_size, "num_workers": num_workers,
    }
    test_time = build_test_time(test_method, image_size, resize, rerank, rerank_top, rerank_k1, rerank_k2,
                                rerank_lambda, precision or "fp32", channels_last)
    options = EvalAllOptions(
        **{k: v for k, v in given.items() if v is not None},  # unset flags keep the library defaults
        half=half, visualize=visualize, test_time=test_time, compare=compare, msls_protocol=msls_protocol,
        device=str(resolve_device(device)), progress=not no_progress, debug=debug,
        trust_checkpoint=trust_checkpoint,
    )

    def failed(name: str, error: str) -> None:
        click.echo(f"{COMMAND}: error: {name}: {error}", err=True)

    summary = run_all(checkpoint, datasets_root, output, options, log=click.echo, on_failure=failed)
    click.echo(
        f"{len(summary.results)} evaluated, {len(summary.skipped)} skipped, {len(summary.failed)} failed; "
        f"report in {output}/report.md"
    )
    if summary.failed:
        sys.exit(2)
