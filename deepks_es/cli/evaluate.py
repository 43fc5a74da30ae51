"""``deepks-es eval MODEL STORE``: errors of a model and of its base functional against target labels."""

from __future__ import annotations

from ..settings import SCFSettings, add_arguments, from_args


def add_parser(sub):
    p = sub.add_parser(
        "eval",
        help="self-consistent errors of a model vs a target label store (table + PNG plots)",
        description="Runs the model's SCF and the plain base functional's (reusing and filling --base) on every "
        "converged structure of STORE, then prints energy, force, orbital-energy and gap errors and writes "
        "parity, DOS and training-curve plots.",
    )
    p.add_argument("model", metavar="MODEL.pt")
    p.add_argument("store", metavar="TARGET.h5", help="label store with the reference (e.g. HSE06) labels")
    p.add_argument(
        "--base",
        default=None,
        metavar="BASE.h5",
        help="base-functional store to reuse: the frames it lacks are computed into it",
    )
    p.add_argument(
        "--frames", nargs="+", default=None, metavar="INPUT", help="only these structures of STORE (a held-out set)"
    )
    p.add_argument("--out", default="eval", metavar="DIR", help="output folder (stores, eval.md, PNGs); default eval/")
    add_arguments(p, SCFSettings)
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from ..evaluate import evaluate_model

    result = evaluate_model(
        args.model,
        args.store,
        args.out,
        base_path=args.base,
        frames=args.frames,
        scf=from_args(SCFSettings, args),
        progress=not args.no_progress,
    )
    print(result["table"])
    print("\nby cluster size:\n" + result["size_table"])
    print("plots: " + " ".join(result["plots"]))
    return 0
