"""Flags shared by the commands that drive ASE with :class:`deepks_es.ase.DeePKSCalculator` (``opt``,
``md``), and a stand-alone entry point for one command module."""

from __future__ import annotations

import argparse
import sys

from ..errors import DeePKSInputError
from ..settings import SCFSettings, add_arguments, from_args


def add_level_arguments(p) -> None:
    """``--model``, ``--basis``, ``--xc``, ``--charge``, ``--multiplicity``: what a single calculation runs
    (``scf``, ``opt``, ``md``)."""
    p.add_argument(
        "--model",
        default=None,
        help="correction model: a checkpoint file or a shipped model's name (default: PBE -> HSE06; e3; ccsdt: "
        "PBE -> CCSD(T)); 'none' runs the plain base functional",
    )
    p.add_argument("--basis", default=None, help="AO basis (default: the model's, cc-pVDZ)")
    p.add_argument("--xc", default=None, help="base functional (default: the model's, PBE)")
    p.add_argument("--charge", type=int, default=None, help="total charge (default: from the comment line, else 0)")
    p.add_argument(
        "--multiplicity", type=int, default=None, help="2S+1 (default: from the comment line, else 1; only 1)"
    )


def add_calculator_arguments(p) -> None:
    """:func:`add_level_arguments`, the SCF settings, and the calculator's switches."""
    add_level_arguments(p)
    add_arguments(p, SCFSettings, exclude=("workers", "threads_per_worker"))
    p.add_argument(
        "--no-grid-response",
        action="store_true",
        help="leave the DFT grid response out of the forces (cheaper; forces then miss -dE/dx by ~1e-3 eV/Å)",
    )
    p.add_argument(
        "--no-reuse-density",
        action="store_true",
        help="start every SCF from PySCF's default guess instead of the previous step's density",
    )
    p.add_argument("--verbose", type=int, default=0, help="PySCF verbosity (4 logs every SCF cycle)")


def make_calculator(args, frame):
    """The calculator of the parsed ``args`` for the input ``frame`` (its resolved charge and multiplicity).

    Raises:
        DeePKSInputError: a bad setting, model, basis or functional, or a frame the calculator cannot run.
    """
    from ..ase import DeePKSCalculator

    calc = DeePKSCalculator(
        model=args.model,
        basis=args.basis,
        xc=args.xc,
        charge=frame.charge,
        multiplicity=frame.multiplicity,
        settings=from_args(SCFSettings, args),
        grid_response=not args.no_grid_response,
        reuse_density=not args.no_reuse_density,
        verbose=args.verbose,
    )
    return calc


def start_run(args, required_arrays=()):
    """What ``opt`` and ``md`` do before their first SCF: check the output, read the start frame, build and
    check the calculator, read a trajectory to resume from.

    Returns:
        (frame, velocities of the input file or None, calculator, ase.Atoms at the start, resume): resume is
        the last frame of ``args.output`` (checked against this run's settings) or None.

    Raises:
        DeePKSInputError: any bad input (see the commands), before any SCF.
    """
    import ase

    from ..trajectory import check_resume, check_trajectory_output, read_start, read_trajectory, run_meta

    check_trajectory_output(args.output, args.input)
    frame, file_velocities = read_start(args.input, args.charge, args.multiplicity)
    calc = make_calculator(args, frame)
    atoms = ase.Atoms(numbers=frame.numbers, positions=frame.positions_ang)
    calc.make_frame(atoms)  # periodic, elements the model lacks, ... before any SCF
    done = read_trajectory(args.output, required_arrays=required_arrays)
    resume = done[-1] if done else None
    if resume is not None:
        check_resume(resume, frame, run_meta(calc), args.output)
        atoms.positions = resume.positions
    return frame, file_velocities, calc, atoms, resume


def describe(calc) -> str:
    """One line: method, basis, model."""
    if calc.model is None:
        return f"method: {calc.xc} / {calc.basis} (no correction)"
    sha = calc.parameters["model_sha256"] or ""
    return f"method: {calc.xc} + DeePKS / {calc.basis}   model: {calc.model_name}  sha256 {sha[:16]}"


def standalone_main(module, argv=None) -> int:
    """Parse ``argv`` (the arguments after the command's name) for one command ``module`` and run it, with
    the error handling of ``deepks-es`` (one line ``deepks-es: error: ...`` and exit status 2 for bad
    input)."""
    parser = argparse.ArgumentParser(prog="deepks-es")
    sub = parser.add_subparsers(dest="command", required=True)
    name = module.add_parser(sub).prog.split()[-1]
    args = parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)])
    try:
        return module.run(args)
    except DeePKSInputError as exc:
        print(f"deepks-es: error: {exc}", file=sys.stderr)
        return 2
