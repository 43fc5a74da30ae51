"""Cost of the DeePKS correction: plain PySCF PBE vs the corrected SCF, SCF and analytic gradient.

For each water cluster of ``data/water/`` (1, 2, 6, 8, 10, 20 molecules) the script builds, in one
process, a plain ``RKS(PBE)`` and the same object with a correction model attached
(:func:`deepks_es.calc.build_scf`): same geometry, cc-pVDZ, grids (level 3) and ``conv_tol`` (1e-10),
optionally both density-fitted. It times

* the SCF (``mf.kernel()``, grids and initial guess included) and its number of cycles,
* the analytic gradient (``mf.nuc_grad_method().kernel()``),
* the correction alone at the converged density: ``with_deepks.kernel(dm)`` (e_delta and v_delta, the
  per-cycle cost, ms per call) and ``with_deepks.grad(dm)`` (the explicit force term, ms),

and prints the corrected/plain ratios; with ``--hse06`` also one HSE06 run (same density fitting) and the
corrected/HSE06 ratio of SCF + gradient, the cost the correction is meant to save. The model has the
production architecture ("mlp": 108 descriptors per atom, MLP 100-100-100) with small random non-zero
weights (seed 0, N(0, 1e-3)), so that the correction is really evaluated and differentiated; since it may
change the cycle count, both the total-time ratio and the per-cycle ratio are reported. Plain and corrected
runs of a cluster are timed back to back, alternating which goes first; each time is the minimum over
``--repeats`` (default 3 for 1 and 2 waters, 1 above), and the ratio of the medians is printed too. Single
runs scatter by several % on a 2-core machine, so the correction's own share of the SCF and gradient time is
reported as well. ``--torch-threads`` sets torch's intra-op threads (the correction itself runs its tiny
tensors on one torch thread; on busy cores two threads made them ~50x slower). ``--model`` times a trained
checkpoint instead (the e3 model, the shipped default). Target (issue "Benchmark"): both ratios <= 1.05 for
(H2O)8.

Run (the sizes 6..20 take many minutes)::

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_scf.py --sizes 1 2 6 8 10 20
    python benchmarks/bench_scf.py --sizes 1 2 --density-fit --output bench.json
    python benchmarks/bench_scf.py --sizes 8 10 --hse06 [--density-fit]  # against the reference's cost
    python benchmarks/bench_scf.py --sizes 1 2 6 8 --model labels/e3_model/model.pt
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pyscf
import torch

from deepks_es import build_model, load_model
from deepks_es.calc import build_scf
from deepks_es.structures import frame_to_mol, read_frames

WATER_DIR = Path(__file__).resolve().parents[1] / "data" / "water"
CLUSTERS = {1: "H2O.xyz", 2: "2Cs.xyz", 6: "6PR.xyz", 8: "8S4.xyz", 10: "10PP1.xyz", 20: "H2O20.xyz"}
BASIS = "cc-pVDZ"
CONV_TOL = 1e-10


def benchmark_model(seed: int = 0, scale: float = 1e-3):
    """Production-size "mlp" model for H and O with small random weights (non-zero e_delta)."""
    torch.manual_seed(seed)
    model = build_model("mlp", elements=[1, 8])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def time_config(mol, model, density_fit: bool, xc: str = "PBE") -> dict:
    """Time one SCF and its analytic gradient for one configuration (``model=None``: plain ``xc``).

    Returns
    -------
    dict
        ``scf_s``, ``grad_s`` (s), ``cycles``, ``converged``, ``e_tot`` (Eh), ``e_delta`` (Eh) and
        ``mf``, the converged SCF object.
    """
    mf = build_scf(mol, xc=xc, model=model, density_fit=density_fit, conv_tol=CONV_TOL)
    cycles = []
    mf.callback = lambda envs: cycles.append(1)
    scf_s, _ = _timed(mf.kernel)
    grad_s, _ = _timed(lambda: mf.nuc_grad_method().kernel())
    return {
        "scf_s": scf_s,
        "grad_s": grad_s,
        "cycles": len(cycles),
        "converged": bool(mf.converged),
        "e_tot": float(mf.e_tot),
        "e_delta": float(mf.scf_summary.get("e_delta", 0.0)),
        "mf": mf,
    }


def time_correction(mf, n_kernel: int = 20, n_grad: int = 3) -> dict:
    """Time the correction alone at the converged density of a corrected SCF ``mf``.

    Returns
    -------
    dict
        ``corr_ms`` (ms per ``with_deepks.kernel(dm)``, i.e. per SCF cycle) and ``force_ms`` (ms per
        ``with_deepks.grad(dm)``, the explicit force term); minimum over the calls.
    """
    dm = mf.make_rdm1()
    corr = min(_timed(lambda: mf.with_deepks.kernel(dm))[0] for _ in range(n_kernel))
    force = min(_timed(lambda: mf.with_deepks.grad(dm))[0] for _ in range(n_grad))
    return {"corr_ms": 1e3 * corr, "force_ms": 1e3 * force}


def bench_cluster(nwater: int, model, density_fit: bool, repeats: int, hse06: bool = False) -> dict:
    """Plain and corrected runs of one cluster, alternating order; minimum time over ``repeats``. With
    ``hse06``, one HSE06 run (same density fitting) after them: the reference the correction stands in for."""
    mol = frame_to_mol(read_frames([WATER_DIR / CLUSTERS[nwater]])[0], BASIS)
    runs = {"plain": [], "corr": []}
    last_corr = None
    for k in range(repeats):
        order = (("plain", None), ("corr", model))
        for name, m in order if k % 2 == 0 else order[::-1]:
            result = time_config(mol, m, density_fit)
            mf = result.pop("mf")
            last_corr = mf if name == "corr" else last_corr
            del mf
            runs[name].append(result)
            gc.collect()  # the in-core ERIs of a finished run must not stay in memory during the next
    row = {"waters": nwater, "nao": mol.nao, "density_fit": density_fit, "repeats": repeats}
    for name, rs in runs.items():
        row.update({f"{key}_{name}": rs[0][key] for key in ("cycles", "converged", "e_tot", "e_delta")})
        for key in ("scf_s", "grad_s"):
            row[f"{key}_{name}_all"] = [r[key] for r in rs]
            row[f"{key}_{name}"] = min(row[f"{key}_{name}_all"])
    row["scf_ratio"] = row["scf_s_corr"] / row["scf_s_plain"]
    row["cycle_ratio"] = row["scf_ratio"] * row["cycles_plain"] / row["cycles_corr"]
    row["grad_ratio"] = row["grad_s_corr"] / row["grad_s_plain"]
    row["scf_ratio_median"] = float(np.median(row["scf_s_corr_all"]) / np.median(row["scf_s_plain_all"]))
    row.update(time_correction(last_corr))
    add_shares(row)
    if hse06:
        del last_corr
        gc.collect()
        ref = time_config(mol, None, density_fit, xc="HSE06")
        row.update(scf_s_hse06=ref["scf_s"], grad_s_hse06=ref["grad_s"], cycles_hse06=ref["cycles"])
        row["hse06_ratio"] = (row["scf_s_corr"] + row["grad_s_corr"]) / (ref["scf_s"] + ref["grad_s"])
    return row


def add_shares(row: dict) -> dict:
    """The correction's own share of the corrected SCF and gradient times: a noise-free view of the
    overhead (the wall-time ratios of single runs scatter by several % on a 2-core machine).
    One evaluation per cycle plus the initial one; the gradient evaluates the explicit term once."""
    row["corr_share"] = row["corr_ms"] * 1e-3 * (row["cycles_corr"] + 1) / row["scf_s_corr"]
    row["force_share"] = row["force_ms"] * 1e-3 / row["grad_s_corr"]
    return row


def machine_info() -> dict:
    """Cores, thread settings and library versions of this run."""
    env = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **{k: os.environ.get(k) for k in env},
        "torch_threads": torch.get_num_threads(),
        "pyscf_threads": pyscf.lib.num_threads(),
        "torch": str(torch.__version__),
        "pyscf": pyscf.__version__,
        "numpy": np.__version__,
    }


COLUMNS = (  # (header, format) ; format receives the row dict
    ("waters", "{waters}"),
    ("nao", "{nao}"),
    ("cycles plain/corr", "{cycles_plain}/{cycles_corr}"),
    ("SCF plain (s)", "{scf_s_plain:.2f}"),
    ("SCF corrected (s)", "{scf_s_corr:.2f}"),
    ("ratio", "{scf_ratio:.3f}"),
    ("ratio of medians", "{scf_ratio_median:.3f}"),
    ("per-cycle ratio", "{cycle_ratio:.3f}"),
    ("grad plain (s)", "{grad_s_plain:.2f}"),
    ("grad corrected (s)", "{grad_s_corr:.2f}"),
    ("ratio", "{grad_ratio:.3f}"),
    ("correction ms/cycle", "{corr_ms:.2f}"),
    ("explicit-force term (ms)", "{force_ms:.2f}"),
    ("correction share of SCF", "{corr_share:.2%}"),
    ("force term share of gradient", "{force_share:.2%}"),
)
HSE06_COLUMNS = (  # with --hse06
    ("HSE06 SCF (s)", "{scf_s_hse06:.2f}"),
    ("HSE06 grad (s)", "{grad_s_hse06:.2f}"),
    ("corrected / HSE06 (SCF + grad)", "{hse06_ratio:.3f}"),
)


def markdown_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=sorted(CLUSTERS),
        choices=sorted(CLUSTERS),
        help="numbers of waters (default: all)",
    )
    parser.add_argument("--density-fit", action="store_true", help="density fitting for both SCFs")
    parser.add_argument(
        "--hse06", action="store_true", help="also time HSE06 (same density fitting): the reference's own cost"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timings per configuration, minimum kept (default: 3 for 1-2 waters, else 1)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the correction (default: torch's own choice)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a trained checkpoint to time instead (e.g. the e3 model); default: random production-size mlp",
    )
    parser.add_argument("--output", type=Path, default=None, help="save the raw table as JSON")
    args = parser.parse_args(argv)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)

    info = machine_info()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"basis {BASIS}, PBE, grids level 3, conv_tol {CONV_TOL:g}, density fitting {args.density_fit}\n")
    model = benchmark_model() if args.model is None else load_model(args.model)
    print(f"model: {model.kind}" + (f" {args.model}" if args.model else " (random weights)"))
    time_config(frame_to_mol(read_frames([WATER_DIR / CLUSTERS[1]])[0], BASIS), model, args.density_fit)  # warm-up

    columns = COLUMNS + (HSE06_COLUMNS if args.hse06 else ())
    print(markdown_row(h for h, _ in columns))
    print(markdown_row("---" for _ in columns), flush=True)
    rows = []
    for n in args.sizes:
        row = bench_cluster(n, model, args.density_fit, args.repeats or (3 if n <= 2 else 1), args.hse06)
        rows.append(row)
        print(markdown_row(fmt.format(**row) for _, fmt in columns), flush=True)
    if not all(r["converged_plain"] and r["converged_corr"] for r in rows):
        print("WARNING: some SCF did not converge")
    if args.output is not None:
        paths = {"output": str(args.output), "model": args.model and str(args.model)}
        args.output.write_text(json.dumps({"machine": info, "args": vars(args) | paths, "rows": rows}, indent=1))
        print(f"raw table written to {args.output}")


if __name__ == "__main__":
    main()
