"""``deepks-es export``: a label store to extxyz or DeePMD for ML-potential training."""

from __future__ import annotations

from ..export import FORMATS


def add_parser(sub):
    p = sub.add_parser(
        "export",
        help="export a label store to extxyz / DeePMD",
        description="Write converged frames of a label store: extxyz with REF_energy (eV) and "
        "REF_forces (eV/Å, = -gradient), or DeePMD systems (grouped by composition, nopbc).",
    )
    p.add_argument("store", metavar="S.h5")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", required=True, metavar="PATH")
    p.add_argument("--include-unconverged", action="store_true", help="keep unconverged frames (flagged)")
    return p


def run(args) -> int:
    from ..export import export

    n = export(args.store, args.format, args.output, include_unconverged=args.include_unconverged)
    print(f"{n} frames written to {args.output} ({args.format})")
    return 0
