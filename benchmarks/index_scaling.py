"""Nearest-neighbour search: time, memory and recall vs database size for Flat, IVF, HNSW, IVF-PQ.

Every measurement goes through the project's own ``sfrs.retrieval.index.build_index`` and
``search_index`` (CPU faiss), on clustered random unit vectors in float32:

* database: ``--centres`` Gaussian centres (unit norm) plus isotropic noise of total norm
  ``--noise`` (relative to a centre), normalised; generated with a seeded
  ``numpy.random.Generator`` in chunks so that no float64 or full-size temporary exists;
* queries: ``--queries`` database rows drawn at random plus noise of norm ``--query-noise``,
  normalised (each query lies near a database point, as a re-visited place does).

For each (N, D) the parent generates the data once and saves it to a temporary ``.npy``;
each index then runs in a fresh subprocess that loads the data, resets its peak RSS (VmHWM,
via /proc/self/clear_refs) to its current RSS, builds the index, times ``--repeats``
searches of the whole query batch (after a warm-up on 16 queries) and reports the median,
and its peak RSS minus the RSS after loading ("peak MB over data"). ``ru_maxrss`` is only the
fallback where /proc is missing: Linux keeps it across execve, so a child starts with the RSS
its parent had at fork (this inflated 10k x 4096 to +842 MB for every index). The Flat
(exact) subprocess runs first and saves its top-k indices; the approximate indexes' recall@k
is the fraction of those exact top-k rows they return (Flat's own recall is 1 by
definition).

Indexes: ``Flat``; ``IVF{n},Flat`` with n = round(4 sqrt(N)), trained on ``--train-mult`` * n
random database rows, nprobe ``--nprobe``; ``HNSW32`` with ef_search ``--ef-search``;
``IVF{n},PQ{m}np`` (m = ``--pq-m`` bytes per vector) for D >= ``--pq-min-dim`` only. The ``np``
suffix turns off the polysemous training that faiss' factory adds to a plain ``PQ{m}``: search_index
never uses it (``polysemous_ht`` stays 0, same results), and it is a fixed cost of minutes
(IVF400,PQ64 on 10k x 4096: 106 s to build vs 17 s with ``np`` and the same neighbours in a
spot check, measured once on this machine); ``--pq-suffix ''`` measures the factory default.

Skips (printed and listed in the docs): an (N, D) whose estimated memory (database + Flat
copy + queries, or IVF-PQ's add temporaries, the largest of its indexes) exceeds ``--max-gb``; an HNSW index whose build
time, extrapolated (N log N) from HNSW at the largest smaller N of the same D in this run,
exceeds ``--max-build-s`` (0 = never skip). A subprocess still running after ``--timeout`` s is
killed and reported as such.

Usage (from the repository root):
    python benchmarks/index_scaling.py [--sizes 10000,100000,1000000] [--dims 256,4096]
        [--queries 1000] [--k 10] [--max-gb 12] [--max-build-s 240] [--no-write]

Writes a Markdown table between ``<!-- index_scaling:start -->`` and
``<!-- index_scaling:end -->`` in docs/benchmarks.md and the plot docs/index_scaling.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.common import memory_probe  # noqa: E402

MB = 2 ** 20
CHUNK_ELEMENTS = 1 << 24  # 64 MB of float32 per generated chunk


# ----------------------------------------------------------------------------- data

def _normalise_rows(x: np.ndarray) -> None:
    x /= np.linalg.norm(x, axis=1, keepdims=True)


def make_data(num: int, dim: int, num_queries: int, centres: int, noise: float,
              query_noise: float, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clustered unit vectors (num, dim) and queries near random database rows, float32,
    with the centre of each database row and of each query's source row."""
    rng = np.random.default_rng([seed, num, dim])
    centre = rng.standard_normal((min(centres, num), dim), dtype=np.float32)
    _normalise_rows(centre)
    database = np.empty((num, dim), dtype=np.float32)
    sigma = np.float32(noise / math.sqrt(dim))  # noise vector of expected norm `noise`
    labels = rng.integers(0, centre.shape[0], num, dtype=np.int32)
    rows = max(1, CHUNK_ELEMENTS // dim)
    for start in range(0, num, rows):
        stop = min(start + rows, num)
        chunk = database[start:stop]
        rng.standard_normal(out=chunk, dtype=np.float32)
        chunk *= sigma
        chunk += centre[labels[start:stop]]
        _normalise_rows(chunk)
    source = rng.integers(0, num, num_queries)
    queries = rng.standard_normal((num_queries, dim), dtype=np.float32)
    queries *= np.float32(query_noise / math.sqrt(dim))
    queries += database[source]
    _normalise_rows(queries)
    return database, queries, labels, labels[source]


def nlist_for(num: int) -> int:
    return max(1, int(round(4 * math.sqrt(num))))


def index_strings(num: int, dim: int, args: argparse.Namespace) -> List[str]:
    nlist = nlist_for(num)
    names = ["Flat", f"IVF{nlist},Flat", "HNSW32"]
    if args.pq_m and dim >= args.pq_min_dim and dim % args.pq_m == 0:
        names.append(f"IVF{nlist},PQ{args.pq_m}{args.pq_suffix}")
    return names


def kind(index: str) -> str:
    if index.startswith("IVF"):
        return "IVF-PQ" if ",PQ" in index else "IVF"
    return "HNSW" if index.startswith("HNSW") else "Flat"


def estimated_bytes(num: int, dim: int, index: str, args: argparse.Namespace) -> int:
    """Rough resident size of one subprocess: data + queries + index (+ training sample)."""
    data = num * dim * 4 + args.queries * dim * 4
    nlist = nlist_for(num)
    train = min(num, args.train_mult * nlist) * dim * 4
    if kind(index) == "Flat":
        return data + num * dim * 4
    if kind(index) == "IVF":
        return data + num * (dim * 4 + 8) + nlist * dim * 4 + train
    if kind(index) == "HNSW":
        return data + num * (dim * 4 + 2 * 32 * 4 + 64)
    return data + num * (args.pq_m + 8) + nlist * dim * 4 + train + pq_add_bytes(num, dim, args.pq_m) \
        + nlist * args.pq_m * 256 * 4


PQ_ADD_BLOCK = 32768  # faiss' index_ivfpq_add_core_o_bs


def pq_add_bytes(num: int, dim: int, m: int) -> int:
    """Temporaries of faiss' IndexIVFPQ.add: per block of 32768 rows their residuals and, when
    the sub-vectors have >= 16 dimensions, a (rows, m, 256) float32 table of distances to the
    PQ centroids (ProductQuantizer.compute_codes' BLAS path)."""
    block = min(num, PQ_ADD_BLOCK)
    return block * dim * 4 + (block * m * 256 * 4 if dim // m >= 16 else 0)


# ----------------------------------------------------------------------------- worker

def worker(args: argparse.Namespace) -> None:
    from sfrs.retrieval.index import build_index, search_index

    # Warm-up before the baseline: loads faiss/OpenMP/BLAS and their thread pools.
    tiny = np.random.default_rng(0).standard_normal((256, args.worker_dim), dtype=np.float32)
    search_index(build_index(tiny, "Flat", use_gpu=False), tiny[:8], 4)

    database = np.load(args.data)
    queries = np.load(args.query_file)
    baseline, peak_mb, method = memory_probe()
    num = database.shape[0]

    train = None
    if args.worker.startswith("IVF"):
        rng = np.random.default_rng(args.seed + 1)
        rows = min(num, args.train_mult * nlist_for(num))
        train = database[np.sort(rng.choice(num, rows, replace=False))] if rows < num else None

    start = time.perf_counter()
    built = build_index(database, args.worker, train=train, nprobe=args.nprobe, use_gpu=False,
                        ef_search=args.ef_search)
    build_s = time.perf_counter() - start
    del train

    search_index(built, queries[:16], args.k)  # warm-up
    times = []
    indices = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        _, indices = search_index(built, queries, args.k)
        times.append(time.perf_counter() - start)
    peak = peak_mb() - baseline

    if args.worker == "Flat":
        np.save(args.gt, indices)
        recall = 1.0
    else:
        exact = np.load(args.gt)
        hits = (indices[:, :, None] == exact[:, None, :]).any(axis=2)
        recall = float(hits.sum()) / exact.size
    print(json.dumps({"build_s": build_s, "search_s": statistics.median(times), "times_s": times,
                      "recall": recall, "peak_mb": peak, "baseline_mb": baseline,
                      "memory_method": method}))


# ----------------------------------------------------------------------------- parent

def run_worker(index: str, dim: int, paths: Dict[str, str], args: argparse.Namespace) -> Dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", index,
               "--worker-dim", str(dim), "--data", paths["data"], "--query-file", paths["queries"],
               "--gt", paths["gt"]]
    for key in ("k", "repeats", "nprobe", "ef_search", "train_mult", "seed"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    start = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False,
                                   timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"killed after {args.timeout:.0f} s (--timeout)"}
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"{index} worker failed:\n{completed.stderr}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def predicted_build_s(index: str, num: int, dim: int, done: List[Dict]) -> Optional[Tuple[float, int]]:
    """HNSW build time extrapolated (N log N) from HNSW at the largest smaller N, same D.

    Only HNSW: its insertion cost is well described by N log N, while IVF builds mix k-means
    training (~N) and assignment (~N^1.5) in proportions that small runs do not reveal.
    """
    if kind(index) != "HNSW":
        return None
    same = [r for r in done if r["kind"] == "HNSW" and r["D"] == dim and r["N"] < num
            and "build_s" in r]
    if not same:
        return None
    ref = max(same, key=lambda r: r["N"])
    return ref["build_s"] * num / ref["N"] * math.log(num) / math.log(ref["N"]), ref["N"]


def fmt_n(num: int) -> str:
    if num >= 1_000_000 and num % 1_000_000 == 0:
        return f"{num // 1_000_000}M"
    if num >= 1000 and num % 1000 == 0:
        return f"{num // 1000}k"
    return f"{num:,}"


def plot(rows: List[Dict], path: Path, k: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"Flat": "tab:blue", "IVF": "tab:orange", "HNSW": "tab:green", "IVF-PQ": "tab:red"}
    styles = {0: ("-", "o"), 1: ("--", "s"), 2: (":", "^"), 3: ("-.", "D")}
    dims = sorted({r["D"] for r in rows})
    fig, (ax_time, ax_recall) = plt.subplots(1, 2, figsize=(12, 4.8))
    for di, dim in enumerate(dims):
        line, marker = styles[di % len(styles)]
        for name in colours:
            pts = sorted((r["N"], r["search_ms"], r["recall"]) for r in rows
                         if r["D"] == dim and r["kind"] == name and "search_ms" in r)
            if not pts:
                continue
            label = f"{name} D={dim}"
            ns = [p[0] for p in pts]
            ax_time.plot(ns, [p[1] for p in pts], line, marker=marker, color=colours[name], label=label)
            if name != "Flat":
                ax_recall.plot(ns, [p[2] for p in pts], line, marker=marker, color=colours[name],
                               label=label)
    ax_time.set_xscale("log")
    ax_time.set_yscale("log")
    ax_time.set_xlabel("database size N")
    ax_time.set_ylabel("search time, ms per 1000 queries")
    ax_time.set_title("Search time (CPU, shared machine: noisy)")
    ax_time.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize=8)
    ax_recall.set_xscale("log")
    ax_recall.set_xlabel("database size N")
    ax_recall.set_ylabel(f"recall@{k} vs exact Flat")
    ax_recall.set_ylim(0, 1.02)
    ax_recall.set_title(f"Recall@{k} of the approximate indexes")
    ax_recall.grid(True, which="both", alpha=0.3)
    ax_recall.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def interpretation(rows: List[Dict], k: int) -> List[str]:
    """Sentences computed from the measured rows (nothing assumed)."""
    out = []
    for dim in sorted({r["D"] for r in rows}):
        measured = [r for r in rows if r["D"] == dim and "search_ms" in r]
        flats = sorted((r["N"], r["search_ms"]) for r in measured if r["kind"] == "Flat")
        if not flats:
            continue
        text = f"D={dim}:"
        if len(flats) >= 2:
            (n0, t0), (n1, t1) = flats[0], flats[-1]
            text += (f" Flat search time grows {t1 / t0:,.0f}x from N={fmt_n(n0)} to {fmt_n(n1)} "
                     f"({n1 / n0:,.0f}x more vectors);")
        top = flats[-1][0]
        flat_ms = flats[-1][1]
        parts = []
        for r in sorted((r for r in measured if r["N"] == top and r["kind"] != "Flat"),
                        key=lambda r: r["search_ms"]):
            speed = flat_ms / r["search_ms"]
            rel = (f"{speed:,.{0 if speed >= 10 else 1}f}x faster" if speed >= 1
                   else f"{1 / speed:,.1f}x slower")
            parts.append(f"{r['index']} is {rel} than Flat at recall@{k} {r['recall']:.3f}, "
                         f"{r['peak_mb']:,.0f} MB over the data vs Flat's "
                         f"{next(x['peak_mb'] for x in measured if x['N'] == top and x['kind'] == 'Flat'):,.0f} MB"
                         f" (build {r['build_s']:,.1f} s)")
        if parts:
            text += f" at N={fmt_n(top)}, " + "; ".join(parts) + "."
        out.append(text)
    return out


def cpu_seconds() -> Tuple[float, float]:
    """(CPU seconds all processes have been busy, CPU seconds of this process + its children)."""
    busy = float("nan")
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        pass
    own = sum(getattr(resource.getrusage(who), field)
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for field in ("ru_utime", "ru_stime"))
    return busy, own


def render(args: argparse.Namespace, rows: List[Dict], skipped: List[str], load_before: str,
           load_after: str, total_s: float, plot_path: Path, own: Dict[Tuple[int, int], float],
           others_cores: float) -> str:
    from benchmarks.common import cpu_name
    import faiss

    argv = " ".join(sys.argv[1:])
    methods = {r.get("memory_method") for r in rows if "search_ms" in r}
    memory_text = ("`VmHWM` of /proc/self/status; `ru_maxrss` is unusable in a child because Linux "
                   "carries the parent's RSS at fork across execve" if methods == {"VmHWM"}
                   else "`resource.getrusage(RUSAGE_SELF).ru_maxrss`, not resettable: includes "
                   "the parent's RSS at fork where that is larger")
    pq_note = (" (`np`: without the polysemous training faiss' factory adds to `PQ{m}`, which "
               "search_index does not use)" if args.pq_suffix == "np" else "")
    lines = [
        "## Nearest-neighbour index scaling: Flat vs IVF vs HNSW (vs IVF-PQ)",
        "",
        f"Command: `python benchmarks/index_scaling.py{' ' + argv if argv else ''}`  ",
        f"Machine: {os.cpu_count()} CPUs ({cpu_name()}), faiss {faiss.__version__} (CPU, "
        f"{faiss.omp_get_max_threads()} OpenMP threads), numpy {np.__version__}, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; load average before the run "
        f"{load_before}, after {load_after}; other processes kept {others_cores:.2f} of the "
        f"{os.cpu_count()} CPUs busy on average during the run (from /proc/stat minus this run's own "
        f"CPU time). **The machine was shared with other jobs: times are noisy (memory and recall "
        f"are not).** Total run time {total_s / 60:,.1f} min.",
        "",
        f"Workload: clustered random unit vectors, float32 ({args.centres:,} Gaussian centres, noise "
        f"norm {args.noise} relative to a unit centre, normalised); {args.queries:,} queries = random "
        f"database rows + noise of norm {args.query_noise}, normalised; k = {args.k}. Indexes built "
        f"and searched with `sfrs.retrieval.index.build_index` / `search_index`: IVF with "
        f"n = round(4 sqrt(N)) lists trained on {args.train_mult} n random database rows, nprobe "
        f"{args.nprobe}; HNSW32 with ef_search {args.ef_search}; IVF-PQ with {args.pq_m} bytes per "
        f"vector for D >= {args.pq_min_dim}{pq_note}. Search time = median of {args.repeats} searches of the "
        f"whole query batch after a 16-query warm-up, given per 1000 queries. Recall@{args.k} = "
        f"fraction of the exact (Flat) top-{args.k} returned, Flat computed once per (N, D). Each "
        f"(N, D, index) runs in a fresh process; peak MB over data = its peak RSS minus its RSS "
        f"after loading the data (database + queries), with the peak ({memory_text}) reset to the "
        f"current RSS at that point, so it is the memory the index build and search add; data MB "
        f"= the database alone (MB = 2^20 bytes).",
        "",
        f"| N | D | index | build s | search ms / 1000 queries | QPS | recall@{args.k} vs Flat "
        f"| peak MB over data | data MB |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "search_ms" in r:
            recall = "1 (reference)" if r["kind"] == "Flat" else f"{r['recall']:.3f}"
            lines.append(
                f"| {fmt_n(r['N'])} | {r['D']} | `{r['index']}` | {r['build_s']:,.2f} | "
                f"{r['search_ms']:,.1f} | {r['qps']:,.0f} | {recall} | {r['peak_mb']:,.0f} | "
                f"{r['data_mb']:,.0f} |")
        else:
            lines.append(f"| {fmt_n(r['N'])} | {r['D']} | `{r['index']}` | skipped: {r['skipped']} "
                         f"| | | | | {r['data_mb']:,.0f} |")
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
    if own:
        def ivf_recall(n: int, d: int) -> str:
            hit = [r for r in rows if (r["N"], r["D"], r["kind"]) == (n, d, "IVF") and "recall" in r]
            return f", IVF recall {hit[0]['recall']:.3f}" if hit else ""

        per_centre = ", ".join(f"{fmt_n(n)} x {d}: {100 * v:.0f}% (N / centres = "
                               f"{n / min(args.centres, n):,.3g}{ivf_recall(n, d)})"
                               for (n, d), v in own.items())
        lines += ["", f"Share of the exact top-{args.k} lying in the query's own cluster (from the Flat "
                      f"results): {per_centre}. A high share means the true neighbours form one tight "
                      f"cluster, which the IVF k-means lists capture: the synthetic data's structure, "
                      f"not a property of real descriptors, sets how easy it is for IVF."]
    pq_rows = [r for r in rows if r["kind"] == "IVF-PQ" and "peak_mb" in r]
    if pq_rows:
        notes = ", ".join(f"{fmt_n(r['N'])} x {r['D']}: {pq_add_bytes(r['N'], r['D'], args.pq_m) / MB:,.0f} "
                          f"MB of add temporaries vs {r['peak_mb']:,.0f} MB measured" for r in pq_rows)
        lines += ["", f"IVF-PQ stores {args.pq_m + 8} bytes per vector (code + id), but its build "
                      f"needs temporary memory: faiss' `IndexIVFPQ.add` encodes blocks of {PQ_ADD_BLOCK:,} rows "
                      f"with their float32 residuals and, for sub-vectors of >= 16 dimensions, a "
                      f"(rows, m, 256) float32 distance table ({notes}; the rest is the training "
                      f"sample and centroids)."]
    lines += ["", *interpretation(rows, args.k)]
    try:
        rel = plot_path.resolve().relative_to((REPO / "docs").resolve())
    except ValueError:
        rel = plot_path
    lines += ["", f"![search time and recall vs N]({rel})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ints = lambda s: [int(float(v)) for v in s.split(",") if v.strip()]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dims", type=ints, default=[256, 4096])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-gb", type=float, default=12.0,
                        help="skip (N, D) whose estimated memory exceeds this (GiB)")
    parser.add_argument("--max-build-s", type=float, default=240.0,
                        help="skip an index whose extrapolated build time exceeds this (0 = never)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="kill a subprocess after this (s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--train-mult", type=int, default=30, help="IVF training rows per list")
    parser.add_argument("--pq-m", type=int, default=64, help="PQ bytes per vector (0 = no IVF-PQ)")
    parser.add_argument("--pq-min-dim", type=int, default=4096, help="run IVF-PQ only for D >= this")
    parser.add_argument("--pq-suffix", default="np",
                        help="appended to PQ{m}: 'np' = no polysemous training ('' = factory default)")
    parser.add_argument("--centres", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--query-noise", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "index_scaling.png")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-dim", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--query-file", help=argparse.SUPPRESS)
    parser.add_argument("--gt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    started = time.perf_counter()
    busy_start, own_start = cpu_seconds()
    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    budget = args.max_gb * 2 ** 30
    rows: List[Dict] = []
    skipped: List[str] = []
    own: Dict[Tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="index_scaling_") as tmp:
        for dim in args.dims:
            for num in sorted(args.sizes):
                data_mb = num * dim * 4 / MB
                names = index_strings(num, dim, args)
                need = max(estimated_bytes(num, dim, name, args) for name in names)
                if need > budget:
                    why = (f"N={fmt_n(num)} x D={dim}: data alone {data_mb / 1024:,.1f} GiB, estimated "
                           f"{need / 2**30:,.1f} GiB with the index > --max-gb {args.max_gb:g}")
                    print(f"SKIP {why}", file=sys.stderr, flush=True)
                    skipped.append(why)
                    continue
                start = time.perf_counter()
                database, queries, labels, query_labels = make_data(num, dim, args.queries, args.centres, args.noise,
                                              args.query_noise, args.seed)
                paths = {"data": os.path.join(tmp, "data.npy"),
                         "queries": os.path.join(tmp, "queries.npy"),
                         "gt": os.path.join(tmp, "flat_topk.npy")}
                np.save(paths["data"], database)
                np.save(paths["queries"], queries)
                del database, queries
                print(f"N={fmt_n(num)} D={dim}: data {data_mb:,.0f} MB generated in "
                      f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
                flat_ok = True
                for name in names:
                    row = {"N": num, "D": dim, "index": name, "kind": kind(name), "data_mb": data_mb}
                    guess = predicted_build_s(name, num, dim, rows)
                    if not flat_ok:
                        row["skipped"] = "no Flat ground truth"
                    elif args.max_build_s > 0 and guess and guess[0] > args.max_build_s:
                        row["skipped"] = (f"build predicted {guess[0]:,.0f} s from N={fmt_n(guess[1])} "
                                          f"(> --max-build-s {args.max_build_s:g})")
                    else:
                        result = run_worker(name, dim, paths, args)
                        row.update(result)
                        if "skipped" not in result:
                            row["search_ms"] = result["search_s"] * 1000 * 1000 / args.queries
                            row["qps"] = args.queries / result["search_s"]
                            if name == "Flat":  # how much of the exact top-k is the query's cluster
                                exact = np.load(paths["gt"])
                                own[(num, dim)] = float((labels[exact] == query_labels[:, None]).mean())
                    if "skipped" in row:
                        flat_ok = flat_ok and name != "Flat"
                        skipped.append(f"`{name}` at N={fmt_n(num)} x D={dim}: {row['skipped']}")
                        print(f"SKIP {name} N={fmt_n(num)} D={dim}: {row['skipped']}",
                              file=sys.stderr, flush=True)
                    else:
                        print(f"{name:>16} N={fmt_n(num):>5} D={dim:>5}: build {row['build_s']:8.2f} s, "
                              f"search {row['search_ms']:9.1f} ms/1000q (runs "
                              f"{', '.join(f'{t:.3f}' for t in row['times_s'])} s), recall "
                              f"{row['recall']:.3f}, peak +{row['peak_mb']:,.0f} MB, "
                              f"wall {row['wall_s']:.0f} s", file=sys.stderr, flush=True)
                    rows.append(row)
                for path in paths.values():
                    if os.path.exists(path):
                        os.remove(path)
    total_s = time.perf_counter() - started
    busy_end, own_end = cpu_seconds()
    others_cores = max(0.0, (busy_end - busy_start) - (own_end - own_start)) / total_s
    load_after = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    measured = [r for r in rows if "search_ms" in r]
    if not args.no_write and measured:
        plot(measured, args.plot, args.k)
    block = render(args, rows, skipped, load_before, load_after, total_s, args.plot, own,
                   others_cores)
    print(block)
    print(f"total run time {total_s:.0f} s", file=sys.stderr)
    if not args.no_write:
        from benchmarks.common import write_block
        write_block("index_scaling", block, args.docs)
        print(f"wrote {args.docs} and {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
