"""``deepks-es opt``: geometry optimisation (ASE's BFGS or FIRE) with the corrected SCF's energy and forces.

Every step is appended to ``--output`` (extxyz: ``REF_energy`` eV, ``REF_forces`` eV/Å and the step's
info, :data:`deepks_es.keys.TRAJECTORY_INFO`) as soon as it is computed; a rerun with the same
``--output`` continues from its last geometry.
"""

from __future__ import annotations

import sys

from ..settings import OptSettings, add_arguments, from_args
from ._calculator import add_calculator_arguments, describe, standalone_main, start_run

OPTIMIZERS = ("bfgs", "fire")


def add_parser(sub):
    p = sub.add_parser(
        "opt",
        help="geometry optimisation with the DeePKS-corrected SCF (ASE BFGS or FIRE)",
        description="Optimise the geometry of FILE (its last frame) with PBE (or --xc) + DeePKS energies and "
        "analytic forces. Each step is appended to --output; rerunning with the same --output resumes.",
    )
    p.add_argument("input", metavar="FILE", help="xyz/extxyz file (the last frame of a multi-frame file)")
    p.add_argument("--output", required=True, metavar="PATH", help="trajectory, extxyz (appended; resumed)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="bfgs", help="ASE optimiser (default bfgs)")
    add_arguments(p, OptSettings)
    add_calculator_arguments(p)
    return p


def _fmax(forces) -> float:
    return float((forces**2).sum(axis=1).max() ** 0.5)


def run(args) -> int:
    from ase.optimize import BFGS, FIRE

    from ..keys import REF_FORCES
    from ..trajectory import run_steps, step_info

    opt = from_args(OptSettings, args)
    frame, _, calc, atoms, last = start_run(args)
    start = 0
    if last is not None:
        start = int(last.info["step"])
        fmax = _fmax(last.arrays[REF_FORCES])
        if fmax < opt.fmax:
            print(f"{args.output}: already converged at step {start} (fmax {fmax:.4f} < {opt.fmax} eV/Å)")
            return 0
        print(f"resuming {args.output} from step {start} (fmax {fmax:.4f} eV/Å); the optimiser starts afresh there")
    if start >= opt.steps:
        print(f"deepks-es: {args.output} has reached --steps {opt.steps} without converging; raise --steps")
        return 1
    print(describe(calc))
    print(f"{args.optimizer.upper()} on {frame.name} ({len(atoms)} atoms), fmax {opt.fmax} eV/Å, steps {opt.steps}")
    atoms.calc = calc
    dyn = {"bfgs": BFGS, "fire": FIRE}[args.optimizer](atoms, logfile=None)

    def line(step, info):
        fmax, energy = info["fmax_ev_ang"], calc.results["energy"]
        return f"step {step:4d}  energy {energy:.6f} eV  fmax {fmax:.4f} eV/Å  cycles {info['cycles']:3d}"

    steps = dyn.irun(fmax=opt.fmax, steps=opt.steps - start)
    status, step, converged = run_steps(
        dyn, steps, args.output, start, last is not None, lambda step: (step_info(calc, step), None), line
    )
    if status:
        return status
    if not converged:
        print(f"deepks-es: not converged within --steps {opt.steps}; rerun with more --steps to continue")
        return 1
    print(f"converged at step {step}: energy {calc.results['energy']:.6f} eV; trajectory in {args.output}")
    return 0


def main(argv=None) -> int:
    """``deepks-es opt`` with ``argv`` (the arguments after ``opt``)."""
    return standalone_main(sys.modules[__name__], argv)
