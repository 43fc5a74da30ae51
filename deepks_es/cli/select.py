"""``deepks-es select``: rank candidate frames by the committee's force deviation and write the ones to
label next (active learning, DP-GEN's trust levels)."""

from __future__ import annotations

import sys

from ..settings import DEFAULT_BASIS, SCFSettings, add_arguments, from_args


def add_parser(sub):
    p = sub.add_parser(
        "select",
        help="pick the frames to label next by committee force deviation (active learning)",
        description="Labels the candidates with a committee of models (deepks, forces; resumable --store), "
        "keeps those whose max force deviation lies in [--trust-lo, --trust-hi) eV/Å, largest first, "
        "removes near-duplicates and writes at most --max frames to --output (extxyz).",
    )
    p.add_argument("candidates", nargs="+", metavar="CANDIDATE", help="xyz/extxyz files, DeePMD folders, folders")
    p.add_argument("--model", nargs="+", required=True, metavar="PT", help="two or more committee models")
    p.add_argument("--trust-lo", type=float, required=True, metavar="EV_ANG", help="lower trust level, eV/Å")
    p.add_argument("--trust-hi", type=float, required=True, metavar="EV_ANG", help="upper trust level, eV/Å")
    p.add_argument("--max", type=int, default=50, dest="max_frames", help="the most frames to select (default 50)")
    p.add_argument("--duplicate-ang", type=float, default=0.02, help="near-duplicate threshold, Å (default 0.02)")
    p.add_argument("--output", required=True, metavar="NEXT.extxyz", help="the selected frames")
    p.add_argument("--store", default=None, metavar="S.h5", help="committee label store (default: OUTPUT.h5)")
    p.add_argument("--basis", default=DEFAULT_BASIS)
    add_arguments(p, SCFSettings)
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from pathlib import Path

    from ..dataset import geometry_key
    from ..engine import run_batch
    from ..errors import DeePKSInputError
    from ..methods import LabelSpec
    from ..output import check_output_path, output_format, write_extxyz
    from ..select import select_frames
    from ..store import LabelStore
    from ..structures import read_frames

    if len(args.model) < 2:
        raise DeePKSInputError("--model: a committee needs two or more models (e.g. train --seeds 0 1 2)")
    if output_format(args.output) != "extxyz":
        raise DeePKSInputError(f"--output {args.output}: select writes extxyz; use a .extxyz suffix")
    store_path = args.store or str(Path(args.output).with_suffix(".h5"))
    check_output_path(args.output, "--output", inputs=args.candidates)
    check_output_path(store_path, "--store", inputs=args.candidates)
    select_frames([], args.trust_lo, args.trust_hi, args.max_frames, args.duplicate_ang)  # the numbers, now
    spec = LabelSpec(
        method="deepks", basis=args.basis, forces=True, model_paths=args.model, scf=from_args(SCFSettings, args)
    ).validate()
    frames = read_frames(args.candidates, check=False)
    store = LabelStore(store_path, spec.metadata())
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    print(run_batch(frames, spec, store, progress=not args.no_progress, log=log).line())
    wanted = {geometry_key(f) for f in frames}
    records = [r for r in store.records(include_unconverged=True, include_failed=True, matrices=False)]
    records = [r for r in records if geometry_key(r) in wanted]
    result = select_frames(records, args.trust_lo, args.trust_hi, args.max_frames, args.duplicate_ang)
    write_extxyz(
        args.output,
        [
            (
                r["numbers"],
                r["positions_ang"],
                None,
                None,
                {
                    "name": r["name"],
                    "source": r["source"],
                    "charge": r["charge"],
                    "multiplicity": r["multiplicity"],
                    "max_devi_f_ev_ang": result.devi_ev_ang[r["key"]],
                },
            )
            for r in result.selected
        ],
    )
    print(result.line())
    print(f"{len(result.selected)} frames written to {args.output} (label them next: deepks-es label ...)")
    return 0
