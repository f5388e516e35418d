"""Shared pieces of the thin click commands: error reporting, devices, evaluation protocol options."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Optional

import click
import torch

from sfrs.errors import ConfigError, SfrsError

DEBUG_OPTION = click.option(
    "--debug", is_flag=True, help="Show full tracebacks instead of one-line errors."
)
TRUST_CHECKPOINT_OPTION = click.option(
    "--trust-checkpoint", is_flag=True,
    help="Also load a checkpoint holding pickled Python objects (an older format, or a file made "
         "elsewhere): loading it can run arbitrary code, so only for files from a trusted source.",
)


def protocol_options(fn: Callable) -> Callable:
    """``--nms/--no-nms``, ``--query-resize N`` and ``--no-query-resize``: overrides of the
    data set's evaluation conventions (``sfrs.data.conventions``)."""
    fn = click.option("--no-query-resize", is_flag=True,
                      help="Resize queries like database images, overriding the data set's conventions.")(fn)
    fn = click.option("--query-resize", type=click.IntRange(min=1), metavar="N",
                      help="Resize queries to a shorter side of N pixels, aspect kept (default: the data "
                           "set's conventions: 640 for Tokyo 24/7, like the database elsewhere).")(fn)
    return click.option("--nms/--no-nms", default=None,
                        help="Spatial NMS by database place (default: the data set's conventions: "
                             "on for Tokyo 24/7, off elsewhere).")(fn)


def query_resize_override(query_resize: Optional[int], no_query_resize: bool) -> Optional[int]:
    """The ``query_resize`` argument of ``sfrs.retrieval.evaluate`` (None = the conventions)."""
    from sfrs.retrieval.protocol import NO_QUERY_RESIZE

    if query_resize is not None and no_query_resize:
        raise ConfigError("--query-resize and --no-query-resize cannot be used together")
    return NO_QUERY_RESIZE if no_query_resize else query_resize


def test_time_options(fn: Callable) -> Callable:
    """``--test-method``, ``--image-size``, ``--resize``, ``--rerank`` (``--rerank-top/-k1/-k2/
    -lambda``), ``--precision``, ``--channels-last``: how descriptors are computed and
    searched at test time (``sfrs.retrieval.test_time``); :func:`build_test_time` checks them.
    Values are checked there, not by click, so that a bad one is a one-line error."""
    from sfrs.config import MiningConfig

    options = [
        click.option("--test-method", default="single", show_default=True,
                     help="Query views: single, central_crop, five_crops (mean descriptor), nearest_crop "
                          "(crops searched, merged by distance), maj_voting (crops searched, majority "
                          "voting); the database is always described whole."),
        click.option("--image-size", metavar="H,W",
                     help="Test input size of database and query images (default: the model's input size)."),
        click.option("--resize", metavar="shorter_side:N",
                     help="Resize database and query images to a shorter side of N pixels, aspect kept "
                          "(instead of a fixed size; crop methods then crop N x N)."),
        click.option("--rerank", is_flag=True,
                     help="k-reciprocal re-ranking (Zhong et al., CVPR 2017) of each query's top results over "
                          "queries + database (their descriptors are held in memory for it)."),
        click.option("--rerank-top", type=int, default=100, show_default=True, help="Results re-ranked per query."),
        click.option("--rerank-k1", type=int, default=MiningConfig.rerank_k1, show_default=True,
                     help="k1 of k-reciprocal re-ranking."),
        click.option("--rerank-k2", type=int, default=MiningConfig.rerank_k2, show_default=True,
                     help="k2 (local query expansion, 1 = none)."),
        click.option("--rerank-lambda", type=float, default=MiningConfig.rerank_lambda, show_default=True,
                     help="Weight of the original distance in the re-ranked one."),
        click.option("--precision", help="Extraction arithmetic: fp32, bf16 or fp16 (autocast; descriptors "
                                         "stay float32). Default: the config's eval.precision (fp32)."),
        click.option("--channels-last", is_flag=True, help="Run the network on channels-last tensors."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_test_time(test_method: str, image_size: Optional[str], resize: Optional[str], rerank: bool,
                    rerank_top: int, rerank_k1: int, rerank_k2: int, rerank_lambda: float,
                    precision: str, channels_last: bool):
    """The :class:`sfrs.retrieval.test_time.TestTime` of :func:`test_time_options`'s values
    (ConfigError naming the option on a bad one)."""
    from sfrs.config import MiningConfig
    from sfrs.retrieval.test_time import RerankSettings, TestTime, parse_image_size, parse_resize

    given = [flag for flag, value in (("--rerank-top", rerank_top != 100), ("--rerank-k1", rerank_k1 != MiningConfig.rerank_k1),
                                      ("--rerank-k2", rerank_k2 != MiningConfig.rerank_k2),
                                      ("--rerank-lambda", rerank_lambda != MiningConfig.rerank_lambda)) if value]
    if given and not rerank:
        raise ConfigError(f"{', '.join(given)} without --rerank: add --rerank to re-rank")
    settings = RerankSettings(top=rerank_top, k1=rerank_k1, k2=rerank_k2, lam=rerank_lambda,
                              distance=MiningConfig.rerank_distance) if rerank else None
    return TestTime(
        method=test_method, image_size=parse_image_size(image_size) if image_size else None,
        shorter_side=parse_resize(resize) if resize else None, rerank=settings, precision=precision,
        channels_last=channels_last,
    )


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error, also when it crossed a DataLoader worker."""
    from sfrs.data.images import unwrap_worker_error

    return unwrap_worker_error(exc)


def report_errors(command_name: str) -> Callable:
    """Turn :class:`SfrsError` into ``<command>: error: <one line>`` and exit code 2.

    The wrapped function must accept a ``debug`` keyword (from :data:`DEBUG_OPTION`);
    with ``--debug`` the original traceback is shown instead.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            debug = kwargs.get("debug", False)
            try:
                return fn(*args, **kwargs)
            except SfrsError as exc:
                if debug:
                    raise
                click.echo(f"{command_name}: error: {one_line(exc)}", err=True)
                sys.exit(2)
            except RuntimeError as exc:
                # DataLoader workers re-raise our errors wrapped; keep them one line too.
                if not debug and "sfrs.errors." in str(exc):
                    click.echo(f"{command_name}: error: {one_line(exc)}", err=True)
                    sys.exit(2)
                raise
            except KeyboardInterrupt:
                click.echo(f"{command_name}: interrupted", err=True)
                sys.exit(130)

        return wrapper

    return decorate


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise click.BadParameter(f"unknown device '{name}'", param_hint="--device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA was requested but is not available", param_hint="--device")
    return device


def installed_version() -> str:
    """The installed distribution's version; ``sfrs.__version__`` in a tree never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sfrs")
    except PackageNotFoundError:
        import sfrs

        return getattr(sfrs, "__version__", "unknown")


def version_option(command_name: str) -> Callable:
    """``--version``: prints ``<command_name> <version>`` and exits."""

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(f"{command_name} {installed_version()}")
            ctx.exit()

    return click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=show,
                        help="Show the version and exit.")


def training_config_options(command):
    """The flags that make a training run's configuration (:func:`sfrs.config.load_training_config`),
    shared by ``sfrs-train`` and ``sfrs-sweep`` (where they apply to every run)."""
    from sfrs.data import dataset_spec_help

    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="YAML config (default: the synthetic-city demo)."),
        click.option("--dataset", help=dataset_spec_help()),
        click.option("--images-root", type=click.Path(file_okay=False), help="Image root for a .mat dataset."),
        click.option("--generations", type=int,
                     help="Number of generations (the schedule is cut or its last entry repeated)."),
        click.option("--epochs", type=int, help="Epochs of every generation."),
        click.option("--init-from", type=click.Path(dir_okay=False),
                     help="Start every student from this model's weights (e.g. a self-supervised pre-training)."),
        click.option("--set", "overrides", multiple=True,
                     help="Override a config key: --set optim.lr=0.01 (repeatable)."),
        click.option("--precision", help="Arithmetic of the training steps: fp32, bf16 or fp16 (autocast; fp16 on "
                                         "CUDA scales the loss). Default: the config's train.precision (fp32)."),
        click.option("--deterministic", is_flag=True, help="Deterministic algorithms (bit-exact resume on CPU)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
