"""``deepks-es scf``: corrected SCF (energy, orbital energies, gap, optional forces) on structure files."""

from __future__ import annotations

import sys

from ._calculator import add_level_arguments
from ..settings import SCFSettings, add_arguments, from_args


def add_parser(sub):
    p = sub.add_parser(
        "scf",
        help="SCF with the DeePKS correction on one or more structure files",
        description="PBE (or --xc) + DeePKS correction inside the PySCF SCF loop. Prints energy, "
        "e_delta, HOMO/LUMO/gap and (with --forces) forces for every structure.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help="xyz/extxyz files (all frames are run)")
    add_level_arguments(p)
    p.add_argument("--forces", action="store_true", help="also compute analytic forces")
    p.add_argument("--output", default=None, metavar="PATH", help="write results: .json (for scripts) or .extxyz")
    add_arguments(p, SCFSettings, exclude=("workers", "threads_per_worker"))
    p.add_argument("--verbose", type=int, default=0, help="PySCF verbosity (4 logs every SCF cycle)")
    return p


def run(args) -> int:
    from ..calc import build_scf, single_point
    from ..model import resolve_level
    from ..output import check_output_path, output_format, summary, to_record, write_records
    from ..structures import frame_to_mol, read_frames

    model, model_name, basis, xc = resolve_level(args.model, args.basis, args.xc)
    settings = from_args(SCFSettings, args).for_model(model)
    if args.output:  # refuse an unknown suffix or an unwritable path before any compute
        output_format(args.output)
        check_output_path(args.output, "--output", inputs=args.inputs)
    frames = read_frames(args.inputs, charge=args.charge, multiplicity=args.multiplicity)
    mols = [frame_to_mol(f, basis, verbose=args.verbose) for f in frames]
    if model is not None:
        for mol in mols:  # basis, base functional and elements for every structure before any compute
            model.check_compatible(basis=basis, xc=xc, numbers=mol.atom_charges())
    meta = {
        "model": model_name,
        "model_sha256": model.settings.get("sha256") if model else None,
        "model_trained": bool(model.settings.get("trained")) if model else None,
        "basis": basis,
        "xc": xc,
        "density_fit": settings.density_fit,
    }
    base = f"{xc}{' (density fitting)' if settings.density_fit else ''}"
    if model is None:
        print(f"method: {base} / {basis} (no correction)")
    else:
        print(f"method: {base} + DeePKS / {basis}   model: {model_name}  sha256 {meta['model_sha256'][:16]}")
        if not meta["model_trained"]:
            print(f"WARNING: this model is UNTRAINED ({model.settings.get('description')})")
    records, failed = [], 0
    for frame, mol in zip(frames, mols):
        mf = build_scf(mol, xc=xc, model=model, settings=settings)
        records.append(to_record(frame, single_point(mf, forces=args.forces), meta))
        failed += not records[-1]["converged"]
        print(summary(records[-1]), flush=True)
        if args.output:  # written after every structure: an interrupted run keeps what finished
            write_records(frames[: len(records)], records, args.output)
    if args.output:
        print(f"results written to {args.output}")
    if failed:
        print(f"deepks-es: {failed} of {len(records)} SCF runs did not converge", file=sys.stderr)
        return 1
    return 0
