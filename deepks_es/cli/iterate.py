"""``deepks-es iterate CONFIG``: self-consistent training (base SCF -> train -> SCF with the new model ...)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "iterate",
        help="iterate SCF and training to self-consistency (YAML config)",
        description="Each iteration labels the training structures with the current model (plain base "
        "functional first), trains the next model at those densities (warm start) and checks its SCF "
        "convergence. A killed run resumes from the last finished step.",
    )
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="K",
        help="stop once model K is trained (before the SCF pass of iteration K+1), e.g. to evaluate it "
        "held out first; rerun without it to continue",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from ..config import load_config
    from ..workflow import run_iterate

    cfg = load_config(args.config, "iterate")
    path = run_iterate(cfg, progress=not args.no_progress, stop_after=args.stop_after)
    print(f"model: {path}")
    return 0
