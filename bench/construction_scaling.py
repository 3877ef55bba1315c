"""How value construction scales with the number of respondents (525, 5,250, 52,500 by default).

    python bench/construction_scaling.py [--sizes 525 5250 52500 525000] [--workers 2] [--json out.json]

Synthetic answers (valuelex.construct.synthetic.bulk_elicitation, 4 planted factors over ~136 value
words, about 6 words per answer as in the paper's 43,884 words from 525 respondents x 15 prompts,
written block by block) go through
each step of the construction pipeline. Every step runs in its own subprocess, reading the
previous step's output from disk, so its time and peak memory (ru_maxrss of that process; the
"base" column is the process after imports and input loading) are its own. Naming is excluded.
Extraction and incidence run per chunk (`chunk_rows` answers, `answers_chunk` as in the stage's Ray tasks) in
`--workers` processes, each reading its own row groups and writing its own occurrence file.
FAISS and scikit-learn KMeans are compared on the same embeddings: the word embeddings (what the
pipeline clusters) and, to show the scaling, N noisy copies of them (N = respondents).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
STEPS = ("generate", "extraction", "countvectorizer", "cooccurrence", "correlation_phi", "correlation_tetrachoric",
         "parallel_analysis", "efa", "embedding", "kmeans", "kmeans_compare")
COMPARE_MAX = 52_500  # the side-by-side comparisons hold every answer (or point) in one process
PIPELINE_STEPS = tuple(s for s in STEPS[1:-1] if s != "countvectorizer")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _save_incidence(path: Path, incidence) -> None:
    """An `Incidence` as one .npz: CSR arrays, units (joined by \\x1f) and words."""
    import numpy as np

    counts = incidence.counts
    np.savez(path, data=counts.data, indices=counts.indices, indptr=counts.indptr, shape=np.array(counts.shape),
             units=np.array(["\x1f".join(u) for u in incidence.units]), words=np.array(incidence.words))


def _load_incidence(path: Path):
    """The `Incidence` `_save_incidence` wrote."""
    import numpy as np
    import scipy.sparse as sp

    from valuelex.construct.cooccurrence import Incidence

    data = np.load(path, allow_pickle=False)
    counts = sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=tuple(data["shape"]))
    return Incidence([tuple(u.split("\x1f")) for u in data["units"].tolist()], data["words"].tolist(), counts)


def _extract_groups(work: Path, worker: int, groups: list[int]) -> tuple[int, int, float]:
    """Extraction and incidence of some row groups (one chunk each, as `cooccurrence.answers_chunk` in a
    Ray task): occurrences/<worker>.parquet and incidence/<worker>.npz. Returns (answers, words, RSS MB)."""
    import pyarrow.parquet as pq

    from valuelex.construct.cooccurrence import answers_chunk, reduce_incidence
    from valuelex.construct.lexicon import OCCURRENCE_SCHEMA

    source = pq.ParquetFile(work / "elicitation.parquet")
    for folder in ("occurrences", "incidence"):
        (work / folder).mkdir(exist_ok=True)
    answers = occurrences = 0
    incidences = []
    with pq.ParquetWriter(work / "occurrences" / f"{worker}.parquet", OCCURRENCE_SCHEMA) as writer:
        for group in groups:
            chunk = source.read_row_group(group)
            part, incidence = answers_chunk(chunk)
            answers, occurrences = answers + chunk.num_rows, occurrences + part.num_rows
            writer.write_table(part)
            incidences.append(incidence)
    _save_incidence(work / "incidence" / f"{worker}.npz", reduce_incidence(incidences))
    return answers, occurrences, _rss_mb()


def _step(name: str, work: Path, n: int, items: int, workers: int = 1) -> dict:
    """Run one step in this (fresh) process; returns its timing and memory."""
    import numpy as np
    import pyarrow.parquet as pq

    from valuelex.construct.config import ConstructionSpec

    spec = ConstructionSpec()
    extra: dict = {}

    def load_incidence():
        return _load_incidence(work / "incidence.npz")

    if name == "generate":
        from valuelex.construct.synthetic import LARGE, bulk_elicitation

        base = _rss_mb()
        start = time.perf_counter()
        rows = 0
        writer = None
        for block in bulk_elicitation(n, LARGE, items=items, p_mention=0.12, strength=2.0, noise_rate=0.002,
                                      seed=0):
            writer = writer or pq.ParquetWriter(work / "elicitation.parquet", block.schema)
            writer.write_table(block, row_group_size=spec.chunk_rows)
            rows += block.num_rows
        writer.close()
        extra = {"rows": rows}
    elif name == "extraction":
        from concurrent.futures import ProcessPoolExecutor

        groups = pq.ParquetFile(work / "elicitation.parquet").num_row_groups
        base = _rss_mb()
        start = time.perf_counter()
        shares = [list(range(w, groups, workers)) for w in range(workers)]
        if workers == 1:
            results = [_extract_groups(work, 0, shares[0])]
        else:
            with ProcessPoolExecutor(workers) as pool:
                results = list(pool.map(_extract_groups, [work] * workers, range(workers), shares))
        extra = {"answers": sum(r[0] for r in results), "word_occurrences": sum(r[1] for r in results),
                 "workers": workers, "worker_rss_peak_mb": max(r[2] for r in results)}
    elif name in ("countvectorizer", "kmeans_compare") and n > COMPARE_MAX:
        return {"step": name, "seconds": None, "skipped": f"only up to {COMPARE_MAX} respondents"}
    elif name == "countvectorizer":
        # scikit-learn's CountVectorizer(binary=True) with the value vocabulary, over the same answers
        from sklearn.feature_extraction.text import CountVectorizer

        table = pq.read_table(work / "elicitation.parquet", columns=["response"])
        vocabulary = sorted(set(pq.read_table(work / "occurrences", columns=["word"])["word"].unique().to_pylist()))
        answers = [a or "" for a in table["response"].to_pylist()]
        base = _rss_mb()
        start = time.perf_counter()
        words_pattern = r"(?u)\b[^\W\d_]+(?:-[^\W\d_]+)*\b"
        vectorizer = CountVectorizer(binary=True, vocabulary=vocabulary, token_pattern=words_pattern)
        matrix = vectorizer.transform(answers)
        extra = {"answers": len(answers), "vocabulary": len(vocabulary), "nonzero": int(matrix.nnz)}
    elif name == "cooccurrence":
        from valuelex.construct.cooccurrence import prune, reduce_incidence

        base = _rss_mb()
        start = time.perf_counter()
        parts = [_load_incidence(path) for path in sorted((work / "incidence").glob("*.npz"))]  # the workers'
        incidence = reduce_incidence(parts)
        pruned, _ = prune(incidence, spec.min_word_respondents)
        _save_incidence(work / "incidence.npz", pruned)
        (work / "words.json").write_text(json.dumps(pruned.words))
        extra = {"units": pruned.n_units, "distinct_words": len(incidence.words), "kept_words": len(pruned.words)}
    elif name.startswith("correlation_"):
        from valuelex.construct.cooccurrence import correlation_matrix

        incidence = load_incidence()
        base = _rss_mb()
        start = time.perf_counter()
        method = name.removeprefix("correlation_")
        corr = correlation_matrix(incidence.binary, method)  # type: ignore[arg-type]
        np.save(work / f"corr_{method}.npy", corr)
    elif name == "parallel_analysis":
        from valuelex.construct.efa import choose_k, eigenvalues, parallel_thresholds

        incidence = load_incidence()
        corr = np.load(work / "corr_phi.npy")
        base = _rss_mb()
        start = time.perf_counter()
        thresholds = parallel_thresholds(incidence.units_per_word(), incidence.n_units, "phi",
                                         spec.parallel_iterations, spec.parallel_threshold, spec.seed)
        choice = choose_k(eigenvalues(corr), "parallel", thresholds=thresholds)
        (work / "k.json").write_text(json.dumps({"k": choice.chosen}))
        extra = {"k_parallel": choice.parallel, "k_kaiser": choice.kaiser, "iterations": spec.parallel_iterations}
    elif name == "efa":
        from valuelex.construct.efa import run_efa, smooth_correlation

        corr = np.load(work / "corr_phi.npy")
        k = json.loads((work / "k.json").read_text())["k"]
        base = _rss_mb()
        start = time.perf_counter()
        result = run_efa(smooth_correlation(corr)[0], k, spec.rotation, spec.fa_method)
        np.save(work / "loadings.npy", result.loadings)
        extra = {"k": k, "words": corr.shape[0]}
    elif name == "embedding":
        from valuelex.construct.clustering import SentenceEmbedder

        words = json.loads((work / "words.json").read_text())
        embedder = SentenceEmbedder()
        base = _rss_mb()
        start = time.perf_counter()
        np.save(work / "embeddings.npy", embedder(words))
        extra = {"words": len(words), "model_load_excluded": True}
    elif name == "kmeans":
        from valuelex.construct.clustering import refine_dimensions, split_subdimensions

        emb = np.load(work / "embeddings.npy")
        loadings = np.load(work / "loadings.npy")
        words = json.loads((work / "words.json").read_text())
        base = _rss_mb()
        start = time.perf_counter()
        k = loadings.shape[1]
        labels, passes = refine_dimensions(emb, np.argmax(np.abs(loadings), axis=1), k, spec.semantic_margin)
        for dim in range(k):
            members = np.flatnonzero(labels == dim)
            split_subdimensions(emb[members], [words[i] for i in members], spec.subdimensions, seed=0)
        extra = {"refinement_passes": passes}
    elif name == "kmeans_compare":
        extra = _kmeans_compare(np.load(work / "embeddings.npy"), n)
        return {"step": name, "seconds": None, "rss_base_mb": None, "rss_peak_mb": round(_rss_mb(), 1), **extra}
    else:
        raise SystemExit(f"unknown step {name}")
    seconds = time.perf_counter() - start
    return {"step": name, "seconds": round(seconds, 3), "rss_base_mb": round(base, 1),
            "rss_peak_mb": round(_rss_mb(), 1), **extra}


def _kmeans_compare(embeddings, n_points: int) -> dict:
    """FAISS vs scikit-learn KMeans (same data, same k, 5 restarts, 50 iterations), time and objective."""
    import faiss
    import numpy as np
    from sklearn.cluster import KMeans

    from valuelex.construct.clustering import kmeans

    rng = np.random.default_rng(0)
    out = {}
    picks = embeddings[rng.integers(0, len(embeddings), n_points)]
    noisy = picks + rng.normal(0, 0.05, picks.shape)
    noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    for label, x, k in (("words", embeddings, 4), (f"{n_points}_points", noisy, 8)):
        timings = {}
        for impl in ("faiss", "faiss_1thread", "sklearn"):
            start = time.perf_counter()
            if impl == "faiss":  # all OpenMP threads, also for small inputs
                labels, _ = kmeans(x, k, seed=0, niter=50, nredo=5, threads_for_small_inputs=None)
            elif impl == "faiss_1thread":
                faiss.omp_set_num_threads(1)
                labels, _ = kmeans(x, k, seed=0, niter=50, nredo=5, threads_for_small_inputs=None)
                faiss.omp_set_num_threads(os.cpu_count() or 1)
            else:
                labels = KMeans(k, n_init=5, max_iter=50, random_state=0).fit_predict(x)
            seconds = time.perf_counter() - start
            centroids = np.vstack([x[labels == c].mean(axis=0) for c in range(k) if np.any(labels == c)])
            inertia = float(((x - centroids[labels]) ** 2).sum()) if len(centroids) == k else float("nan")
            timings[impl] = {"seconds": round(seconds, 3), "inertia": round(inertia, 2)}
        out[label] = {"n": len(x), "k": k, **timings}
    return out


def _run_size(n: int, items: int, root: Path, workers: int) -> list[dict]:
    work = root / str(n)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in STEPS:
        started = time.perf_counter()
        command = [sys.executable, __file__, "--step", step, "--workdir", str(work), "--n", str(n),
                   "--items", str(items), "--workers", str(workers)]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"step {step} (n={n}) failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["respondents"] = n
        result["process_seconds"] = round(time.perf_counter() - started, 2)
        rows.append(result)
        print(f"  n={n:>6} {step:<24} {result['seconds'] if result['seconds'] is not None else '-':>8} s", flush=True)
    return rows


def _table(rows: list[dict]) -> str:
    sizes = sorted({r["respondents"] for r in rows})
    by = {(r["respondents"], r["step"]): r for r in rows}
    lines = ["step".ljust(24) + "".join(f"{f'n={n}':>28}" for n in sizes),
             " " * 24 + "".join(f"{'seconds':>12}{'peak MB (+step)':>16}" for _ in sizes)]
    for step in PIPELINE_STEPS:
        cells = ""
        for n in sizes:
            r = by[(n, step)]
            peak = max(r["rss_peak_mb"], r.get("worker_rss_peak_mb", 0))  # extraction workers: their own peak
            memory = f"{peak:.0f} (+{peak - r['rss_base_mb']:.0f})"
            cells += f"{r['seconds']:>12.2f}{memory:>16}"
        lines.append(step.ljust(24) + cells)
    total = {n: sum(by[(n, s)]["seconds"] for s in PIPELINE_STEPS) for n in sizes}
    lines.append("total (pipeline steps)".ljust(24) + "".join(f"{total[n]:>12.2f}{'':>16}" for n in sizes))
    compared = [n for n in sizes if by[(n, "countvectorizer")]["seconds"] is not None]
    lines.append("countvectorizer (same answers)".ljust(24) + "".join(
        f"{by[(n, 'countvectorizer')]['seconds']:>12.2f}{'':>16}" for n in compared))
    lines.append("extraction / countvect.".ljust(24) + "".join(
        f"{by[(n, 'extraction')]['seconds'] / by[(n, 'countvectorizer')]['seconds']:>12.2f}{'':>16}" for n in compared))
    lines.append("")
    lines.append("data: " + "; ".join(
        f"n={n}: {by[(n, 'extraction')]['answers']} answers, {by[(n, 'extraction')]['word_occurrences']} words, "
        f"{by[(n, 'cooccurrence')]['kept_words']} kept, K={by[(n, 'efa')]['k']} "
        f"(Kaiser {by[(n, 'parallel_analysis')]['k_kaiser']})" for n in sizes))
    lines.append("")
    lines.append("KMeans, FAISS (all threads, 1 thread) vs scikit-learn, 5 restarts x 50 iterations (s / inertia):")
    for n in compared:
        for label, r in by[(n, "kmeans_compare")].items():
            if isinstance(r, dict) and "faiss" in r:
                cells = "   ".join(f"{impl} {r[impl]['seconds']:.3f} s / {r[impl]['inertia']:.1f}"
                                   for impl in ("faiss", "faiss_1thread", "sklearn"))
                lines.append(f"  n={n:<6} {label:<14} ({r['n']} x k={r['k']}): {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[525, 5250, 52500])
    parser.add_argument("--items", type=int, default=15, help="answers per respondent (prompts x samples)")
    parser.add_argument("--workers", type=int, default=1, help="extraction processes (the stage's Ray tasks)")
    parser.add_argument("--json", type=Path, default=None, help="write all measurements here")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--step", choices=STEPS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(_step(args.step, args.workdir, args.n, args.items, args.workers)))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vlx-bench-") as tmp:
        root = args.workdir or Path(tmp)
        rows = [row for n in args.sizes for row in _run_size(n, args.items, root, args.workers)]
    report = _table(rows)
    print()
    print(report)
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.0f} s on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "wall_seconds": round(wall, 1), "cpus": os.cpu_count(),
                                         "loadavg": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
