"""The ``deepks-es`` command. Each subcommand is a module with ``add_parser(subparsers)`` and
``run(args) -> int``; ``main`` only parses and dispatches, so tests can call ``run`` directly.

Errors from bad input (:class:`deepks_es.errors.DeePKSInputError`) are printed as one line,
``deepks-es: error: ...``, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import DeePKSInputError
from . import evaluate, export, iterate, label, md, opt, scf, select, train

COMMANDS = {
    "scf": scf,
    "label": label,
    "export": export,
    "train": train,
    "iterate": iterate,
    "eval": evaluate,
    "select": select,
    "opt": opt,
    "md": md,
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="deepks-es", description="DeePKS machine-learned density functional on PySCF")
    parser.add_argument("--version", action="version", version=f"deepks-es {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except DeePKSInputError as exc:
        print(f"deepks-es: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepks-es: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
