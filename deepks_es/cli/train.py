"""``deepks-es train CONFIG``: train correction model(s) from a base and a target label store."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "train",
        help="train a correction model from label stores (YAML config)",
        description="Train on (base store, target store) pairs at the base density. The config keys are "
        "listed in README.md (deepks_es/config.py). Rerunning resumes from the checkpoint.",
    )
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="S",
        help="train one model per seed (an ensemble for committee labelling); default: the config's seeds",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from ..config import load_config
    from ..workflow import run_train

    cfg = load_config(args.config, "train")
    paths = run_train(cfg, seeds=args.seeds, progress=not args.no_progress)
    print("models: " + " ".join(str(p) for p in paths))
    return 0
