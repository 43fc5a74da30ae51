"""Throughput of ``deepks-es label`` on real (H2O)6 clusters, against a plain loop of PySCF calls.

For each method (PBE, HSE06, DeePKS with a production-size model) the same frames are labelled with
energies and forces (cc-pVDZ, grid level 3, conv_tol 1e-10):

* ``loop``: a plain Python loop of PySCF calls in this process (``dft.RKS(...).kernel()`` and
  ``nuc_grad_method().kernel()``; for DeePKS the corrected SCF), 2 OpenMP threads, no Dask, no store;
* ``engine w1t2``: :func:`deepks_es.engine.run_batch` with one Dask worker of 2 threads and the HDF5 store.

overhead = engine time / loop time - 1 (target <= 5%), with and without the start-up that a batch pays
once (local cluster, worker processes importing PySCF and torch: a few seconds, which the loop in an
already running interpreter does not pay). For PBE, also ``engine w1t1`` and ``engine w2t1``
(1 and 2 single-thread workers): parallel efficiency = throughput(w2t1) / (2 throughput(w1t1)).

Frames: BEGDB hexamers 6PR, 6CA, 6BK1, 6BAG (Kaplan et al. 2024 data, shared/data/water), or --frames.
Run on an otherwise idle machine:

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_label.py --output out/bench_label.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from pyscf import lib

from deepks_es import build_model, save_model
from deepks_es.calc import build_scf
from deepks_es.engine import run_batch
from deepks_es.methods import XC, LabelSpec
from deepks_es.store import LabelStore
from deepks_es.structures import frame_to_mol, read_frames

SHARED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "water" / "begdb_water_clusters_kaplan2024" / "clusters"
)
DEFAULT_FRAMES = [SHARED / f"{name}.xyz" for name in ("6PR", "6CA", "6BK1", "6BAG")]


def production_model(path: Path) -> Path:
    """Production-size ``mlp`` model (108 descriptors, 100-100-100) with small random weights, saved for the workers."""
    torch.manual_seed(0)
    model = build_model("mlp", elements=[1, 8])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 1e-3)
    save_model(model, path, basis="cc-pVDZ", xc="PBE", trained=False, description="benchmark model")
    return path


def time_loop(frames, spec: LabelSpec) -> float:
    """Seconds for a plain loop of SCF + gradient calls (2 threads), no Dask and no store."""
    from deepks_es import load_model

    lib.num_threads(2)
    model = load_model(spec.model_paths[0]) if spec.method == "deepks" else None
    t0 = time.perf_counter()
    for frame in frames:
        mf = build_scf(frame_to_mol(frame, spec.basis), xc=spec.xc or XC[spec.method], model=model, settings=spec.scf)
        mf.kernel()
        mf.nuc_grad_method().kernel()
    return time.perf_counter() - t0


def time_engine(frames, spec: LabelSpec, workers: int, threads: int, workdir: Path) -> tuple:
    """Seconds for :func:`run_batch` into a fresh store, and the start-up part of them (cluster start and
    worker imports, paid once per batch)."""
    path = workdir / f"{spec.method}-w{workers}t{threads}.h5"
    spec = replace(spec, scf=replace(spec.scf, workers=workers, threads_per_worker=threads))
    store = LabelStore(path, spec.metadata())
    t0 = time.perf_counter()
    summary = run_batch(frames, spec, store, progress=False)
    wall = time.perf_counter() - t0
    assert summary.done == len(frames), summary.line()
    return wall, summary.startup_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", nargs="+", default=[str(p) for p in DEFAULT_FRAMES])
    parser.add_argument("--methods", nargs="+", default=["pbe", "hse06", "deepks"])
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    frames = read_frames(args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_path = production_model(workdir / "model.pt")
        for method in args.methods:
            spec = LabelSpec(
                method=method, forces=True, model_paths=[str(model_path)] if method == "deepks" else []
            ).validate()
            loop_s = time_loop(frames, spec)
            engine_s, startup_s = time_engine(frames, spec, 1, 2, workdir)
            row = {
                "method": method,
                "frames": len(frames),
                "loop_s": loop_s,
                "engine_w1t2_s": engine_s,
                "startup_s": startup_s,
                "overhead": engine_s / loop_s - 1,
                "overhead_after_startup": (engine_s - startup_s) / loop_s - 1,
            }
            if method == "pbe":
                row["engine_w1t1_s"] = time_engine(frames, spec, 1, 1, workdir)[0]
                row["engine_w2t1_s"] = time_engine(frames, spec, 2, 1, workdir)[0]
                row["efficiency_2w"] = row["engine_w1t1_s"] / (2 * row["engine_w2t1_s"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n(H2O)6 frames: {len(frames)}, cc-pVDZ, energies + forces, 2 cores")
    print(
        "| method | loop (frames/min) | engine 1 worker x 2 threads (frames/min) | start-up (s) | overhead | "
        "overhead after start-up | 1 worker x 1 thread (frames/min) | 2 workers x 1 thread (frames/min) | "
        "parallel efficiency |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    fpm = lambda s: f"{60 * len(frames) / s:.2f}"  # noqa: E731
    for r in rows:
        extra = (
            f"{fpm(r['engine_w1t1_s'])} | {fpm(r['engine_w2t1_s'])} | {r['efficiency_2w']:.2f}"
            if "efficiency_2w" in r
            else "– | – | –"
        )
        print(
            f"| {r['method']} | {fpm(r['loop_s'])} | {fpm(r['engine_w1t2_s'])} | {r['startup_s']:.1f} | "
            f"{100 * r['overhead']:+.1f}% | {100 * r['overhead_after_startup']:+.1f}% | {extra} |"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
