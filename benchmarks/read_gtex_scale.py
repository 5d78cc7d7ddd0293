"""Read a GTEx-v8-shaped GCT with a gene subset and normalize it: wall time and peak memory per phase (#11).

The GTEx portal's ``gene_reads`` table has 56,200 genes x 17,382 samples. This benchmark writes a
synthetic one of that shape (gzip level 1, cached under ``--workdir``): Poisson read counts of
genes whose mean levels are log-normal, a third of them almost never detected, with log-normal
library sizes, so most values are zero or small integers as in the real file. Its sample ids are
the real ones (the bundled excerpt's header), so the bundled sample attributes and the paper's
donor split apply. Then, each in a fresh child process:

- ``build``: writing the GCT (skipped when cached);
- ``read``: ``hyfa.data.read_gtex(..., genes=<--genes gene ids>)`` on the paper's cohort (49
  tissues, 834 donors, 15,197 samples), as ``hyfa.data.gtex_acmg59`` calls it;
- ``normalize``: ``hyfa.pp.normalize_gtex`` on the result, in the same child after the read.

Peak memory is the resident set's high-water mark (``VmHWM`` of ``/proc/self/status``) of the
child. Before ``normalize`` the mark is reset (``/proc/self/clear_refs``), so its peak includes the
data read, which it holds, but not the read's transient memory; where the reset is not allowed
the figure is the child's whole peak, and the table says so.

Run ``python benchmarks/read_gtex_scale.py`` (full shape; about 4 GB of disk under ``--workdir``)
or e.g. ``--n-genes 5620 --genes 1256`` for a tenth of it. With an older ``read_gtex`` that has
no ``genes=`` argument, every gene is read and the subset taken afterwards (to measure "before").
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

import hyfa
from hyfa.data import PAPER_DROPPED_TISSUES
from hyfa.data._bundled import _ATTRIBUTES, _FILES, _READS, paper_donor_split

_N_SAMPLES = 17_382
_CHUNK_ROWS = 250
_TAB, _NEWLINE, _ZERO = ord("\t"), ord("\n"), ord("0")
_POWERS_OF_TEN = 10 ** np.arange(1, 10, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# synthetic GCT
# --------------------------------------------------------------------------------------------
def real_sample_ids() -> list[str]:
    """Return the 17,382 GTEx v8 sample ids of the bundled excerpt's header, in file order."""
    with gzip.open(_FILES / _READS, "rt") as fh:
        fh.readline(), fh.readline()
        return fh.readline().rstrip("\n").split("\t")[2:]


def gene_names(n_genes: int) -> tuple[list[str], list[str]]:
    """Return synthetic Ensembl-like gene ids and symbols; every 400th symbol repeats the one before."""
    ids = [f"ENSG{i:011d}.{1 + i % 9}" for i in range(n_genes)]
    symbols = [f"GENE{i - 1 if i % 400 == 399 else i}" for i in range(n_genes)]
    return ids, symbols


def format_counts(counts: np.ndarray) -> list[bytes]:
    """Return each row of non-negative integer ``counts`` as tab-separated decimal text ending in a newline.

    Vectorized: every value's digits are written, least significant first, into one byte buffer at
    offsets from a cumulative sum of the values' widths.
    """
    if counts.min() < 0 or counts.max() > np.iinfo(np.int32).max:
        raise ValueError("counts must be non-negative and fit in int32.")
    values = counts.astype(np.int32).ravel()
    n_digits = np.searchsorted(_POWERS_OF_TEN, values, side="right") + 1
    ends = np.cumsum(n_digits + 1)  # one past each value's separator
    buffer = np.empty(int(ends[-1]), dtype=np.uint8)
    last_digit = ends - 2
    index, rest, k = np.arange(values.size), values, 0
    while index.size:  # the k-th digit from the right of the values that have one
        rest, digit = np.divmod(rest, 10)
        buffer[last_digit[index] - k] = _ZERO + digit
        more = rest > 0
        index, rest, k = index[more], rest[more], k + 1
    separators = np.full(counts.shape, _TAB, dtype=np.uint8)
    separators[:, -1] = _NEWLINE
    buffer[ends - 1] = separators.ravel()
    row_ends = ends[counts.shape[1] - 1 :: counts.shape[1]]
    row_starts = np.concatenate([[0], row_ends[:-1]])
    data = buffer.tobytes()
    return [data[a:b] for a, b in zip(row_starts, row_ends, strict=True)]


def write_synthetic_gct(path: Path, n_genes: int, seed: int) -> None:
    """Write a GTEx-shaped GCT (``n_genes`` x the 17,382 real sample ids) of synthetic read counts, gzip level 1."""
    rng = np.random.default_rng(seed)
    samples = real_sample_ids()
    ids, symbols = gene_names(n_genes)
    level = rng.lognormal(mean=2.0, sigma=2.0, size=n_genes)
    level[rng.random(n_genes) < 1 / 3] *= 1e-3  # rarely detected genes
    library = rng.lognormal(mean=0.0, sigma=0.3, size=len(samples))
    tmp = path.with_suffix(".partial")
    with gzip.open(tmp, "wb", compresslevel=1) as fh:
        fh.write(f"#1.2\n{n_genes}\t{len(samples)}\n".encode())
        fh.write(("\t".join(["Name", "Description", *samples]) + "\n").encode())
        for start in range(0, n_genes, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, n_genes)
            counts = rng.poisson(level[start:stop, None] * library[None, :])
            rows = format_counts(counts)
            fh.write(
                b"".join(
                    f"{ids[g]}\t{symbols[g]}\t".encode() + row
                    for g, row in zip(range(start, stop), rows, strict=True)
                )
            )
    tmp.rename(path)


def gene_subset(n_genes: int, n_subset: int, seed: int) -> list[str]:
    """Return ``n_subset`` gene ids of the synthetic file, drawn at random and listed in file order."""
    rng = np.random.default_rng(seed + 1)
    ids, _ = gene_names(n_genes)
    return [ids[i] for i in np.sort(rng.choice(n_genes, size=n_subset, replace=False))]


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------
def peak_rss_gb() -> float:
    """Return this process's peak resident set size (VmHWM) in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    import resource  # pragma: no cover - not Linux

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # pragma: no cover


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS mark to the current RSS; return whether that was allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _build(path: str, n_genes: int, seed: int, conn) -> None:
    start = time.perf_counter()
    write_synthetic_gct(Path(path), n_genes, seed)
    conn.send({"build": (time.perf_counter() - start, peak_rss_gb(), "whole child")})


def _read_and_normalize(path: str, genes: list[str], chunk_size: int, normalize: bool, conn) -> None:
    results = {}
    split = paper_donor_split()
    kwargs = {"drop_tissues": PAPER_DROPPED_TISSUES, "donors": split.index, "chunk_size": chunk_size}
    subset_arg = "genes" in inspect.signature(hyfa.data.read_gtex).parameters
    start = time.perf_counter()
    if subset_arg:
        mdata = hyfa.data.read_gtex(path, _FILES / _ATTRIBUTES, genes=genes, **kwargs)
    else:  # an older read_gtex: read everything, then subset
        full = hyfa.data.read_gtex(path, _FILES / _ATTRIBUTES, **kwargs)
        mdata = _subset_genes(full, genes)
        del full
    label = "read_gtex(genes=...)" if subset_arg else "read_gtex() then subset"
    results[label] = (time.perf_counter() - start, peak_rss_gb(), "whole child")
    n_samples = sum(a.n_obs for a in mdata.mod.values())
    results["shape"] = (mdata.n_obs, len(mdata.mod), n_samples, mdata[next(iter(mdata.mod))].n_vars)
    if normalize:
        what = "after reset: holds the read data" if reset_peak_rss() else "whole child (reset not allowed)"
        start = time.perf_counter()
        hyfa.pp.normalize_gtex(mdata)
        results["normalize_gtex"] = (time.perf_counter() - start, peak_rss_gb(), what)
    conn.send(results)


def _subset_genes(mdata, genes: list[str]):
    """Return ``mdata`` restricted to ``genes`` (gene ids), for a ``read_gtex`` without ``genes=``."""
    import pandas as pd

    from hyfa.data._mudata import build_mudata

    mods = {}
    for tissue, adata in mdata.mod.items():
        mods[tissue] = adata[:, pd.Index(adata.var["gene_ids"]).get_indexer(genes)].copy()
    return build_mudata(mods, mdata.obs, uns=dict(mdata.uns))


def _in_child(target, *args) -> dict:
    """Run ``target(*args, conn)`` in a fresh process and return what it sends."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(*args, send))
    process.start()
    result = receive.recv()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"{target.__name__} failed with exit code {process.exitcode}.")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/hyfa_gct_bench", help="where the synthetic GCT is cached")
    parser.add_argument("--n-genes", type=int, default=56_200, help="genes (rows) of the synthetic GCT")
    parser.add_argument("--genes", type=int, default=12_557, help="genes to read (genes= subset)")
    parser.add_argument("--chunk-size", type=int, default=500, help="read_gtex chunk_size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-normalize", action="store_true", help="skip normalize_gtex")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"gene_reads_{args.n_genes}x{_N_SAMPLES}_seed{args.seed}.gct.gz"
    rows = []
    if path.exists():
        print(f"Using the cached {path} ({path.stat().st_size / 2**30:.2f} GB).")
    else:
        print(f"Writing {path} ...", flush=True)
        result = _in_child(_build, str(path), args.n_genes, args.seed)
        rows += [(k, *v) for k, v in result.items()]
        print(f"Wrote {path.stat().st_size / 2**30:.2f} GB.")
    genes = gene_subset(args.n_genes, args.genes, args.seed)
    result = _in_child(_read_and_normalize, str(path), genes, args.chunk_size, not args.no_normalize)
    n_donors, n_tissues, n_samples, n_genes = result.pop("shape")
    rows += [(k, *v) for k, v in result.items()]

    print(
        f"\nGCT {args.n_genes:,} genes x {_N_SAMPLES:,} samples (gzip); read {n_genes:,} genes of "
        f"{n_samples:,} samples ({n_donors} donors, {n_tissues} tissues); {os.cpu_count()} CPUs; "
        f"hyfa {hyfa.__version__}.\n"
    )
    print("| phase | wall (s) | peak RSS (GB) | peak measured over |")
    print("| --- | ---: | ---: | --- |")
    for name, wall, peak, what in rows:
        print(f"| {name} | {wall:.1f} | {peak:.2f} | {what} |")


if __name__ == "__main__":
    main()
