"""``deepks-es label``: batch labels (PBE, HSE06, DeePKS, CCSD, CCSD(T)) into a resumable HDF5 store."""

from __future__ import annotations

import sys

from ..methods import METHODS
from ..settings import DEFAULT_BASIS, SCFSettings, add_arguments, from_args


def add_parser(sub):
    p = sub.add_parser(
        "label",
        help="label many structures into a resumable HDF5 store (Dask)",
        description="Label every frame of the inputs with --method and store one record per frame "
        "in --store. Rerunning the same command skips frames already stored.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="xyz/extxyz files (all frames), DeePMD system folders, or folders holding them",
    )
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--store", required=True, metavar="S.h5", help="the HDF5 label store (created or resumed)")
    p.add_argument("--forces", action="store_true", help="analytic forces (ccsd, ccsd(t): costly, small clusters)")
    p.add_argument(
        "--frozen-core", action="store_true", help="ccsd, ccsd(t): freeze the chemical cores (default: all-electron)"
    )
    p.add_argument(
        "--max-memory-mb",
        type=float,
        default=None,
        help="ccsd, ccsd(t): memory per job, MB (default: the available memory / workers); larger jobs are refused",
    )
    p.add_argument(
        "--model",
        nargs="+",
        default=None,
        metavar="PT",
        help="deepks: one model, or several for committee statistics (default: the shipped model)",
    )
    p.add_argument("--basis", default=DEFAULT_BASIS)
    p.add_argument("--save-matrices", action="store_true", help="also store dm, fock, ovlp, mo_coeff (for training)")
    p.add_argument(
        "--save-response",
        action="store_true",
        help="pbe/deepks: also store the orbital levels' self-consistent response (losses.level_response)",
    )
    p.add_argument("--charge", type=int, default=None, help="charge of every frame (default: per frame, else 0)")
    p.add_argument("--multiplicity", type=int, default=None, help="2S+1 of every frame (default: per frame, else 1)")
    add_arguments(p, SCFSettings)
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on an existing Dask cluster, e.g. tcp://host:8786, instead of a local one",
    )
    p.add_argument("--retry-failed", action="store_true", help="rerun frames stored with an error")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ..engine import check_scheduler, run_batch
    from ..methods import LabelSpec, check_memory
    from ..output import check_output_path
    from ..store import LabelStore
    from ..structures import read_frames

    spec = LabelSpec(
        method=args.method,
        basis=args.basis,
        forces=args.forces,
        save_matrices=args.save_matrices,
        save_response=args.save_response,
        model_paths=list(args.model or []),
        scf=from_args(SCFSettings, args),
        frozen_core=args.frozen_core,
        max_memory_mb=args.max_memory_mb,
    ).validate()
    frames = read_frames(args.inputs, charge=args.charge, multiplicity=args.multiplicity, check=False)
    check_output_path(args.store, "--store", inputs=args.inputs)
    check_memory(frames, spec)
    if args.scheduler:
        check_scheduler(args.scheduler)  # before the store is created
    store = LabelStore(args.store, spec.metadata())
    print(
        f"{len(frames)} frames, method {spec.method}"
        + (f" ({spec.xc})" if spec.xc else "")
        + f" / {spec.basis}, store {args.store} ({len(store)} records)"
    )
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    summary = run_batch(
        frames,
        spec,
        store,
        scheduler=args.scheduler,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        log=log,
    )
    print(summary.line())
    if summary.failed or summary.unconverged:
        print(
            f"deepks-es: {summary.failed + summary.unconverged} frames failed or did not converge (kept in the store "
            "as such; --retry-failed reruns the failed ones)",
            file=sys.stderr,
        )
        return 1
    return 0
