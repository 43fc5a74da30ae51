"""``deepks-es md``: molecular dynamics with the corrected SCF's forces: velocity Verlet (NVE), or Langevin
at ``--temperature``.

Every step is appended to ``--output`` (extxyz: ``REF_energy`` eV, ``REF_forces`` eV/Å, velocities
``velocities_ang_fs`` Å/fs and the step's info, :data:`deepks_es.keys.TRAJECTORY_INFO` and
:data:`~deepks_es.keys.TRAJECTORY_MD_INFO`) as soon as it is computed; a rerun with the same ``--output``
continues from its last positions, velocities and step.
"""

from __future__ import annotations

import sys

import numpy as np

from ..settings import MDSettings, add_arguments, from_args
from ._calculator import add_calculator_arguments, describe, standalone_main, start_run


def add_parser(sub):
    p = sub.add_parser(
        "md",
        help="molecular dynamics with the DeePKS-corrected SCF (NVE, or Langevin at --temperature)",
        description="Run MD from FILE (its last frame, with its velocities if it has them) with PBE (or --xc) "
        "+ DeePKS forces: velocity Verlet (NVE) by default, Langevin with --temperature. Each step is appended "
        "to --output; rerunning with the same --output resumes (positions, velocities, step count).",
    )
    p.add_argument("input", metavar="FILE", help="xyz/extxyz file (the last frame of a multi-frame file)")
    p.add_argument("--output", required=True, metavar="PATH", help="trajectory, extxyz (appended; resumed)")
    add_arguments(p, MDSettings)
    add_calculator_arguments(p)
    return p


def initial_velocities(md: MDSettings, file_velocities, atoms):
    """(velocities (natm, 3) Å/fs, how): Maxwell-Boltzmann at ``--initial-temperature`` when given, else the
    file's velocities, else Maxwell-Boltzmann at ``--temperature``, else at rest. Maxwell-Boltzmann
    velocities are drawn with ``--seed``, then the centre-of-mass motion and the rotation are removed."""
    from ase import units
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    temperature = md.initial_temperature or (0.0 if file_velocities is not None else md.temperature)
    if temperature == 0:
        if file_velocities is not None:
            return file_velocities, "velocities from the input file"
        return np.zeros((len(atoms), 3)), "at rest"
    probe = atoms.copy()
    thermalize_momenta(probe, temperature, rng=np.random.default_rng(md.seed))
    Stationary(probe)
    ZeroRotation(probe)
    how = f"Maxwell-Boltzmann at {temperature} K (seed {md.seed}, no translation or rotation)"
    return probe.get_velocities() * units.fs, how


def run(args) -> int:
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    from ..keys import VELOCITIES_ANG_FS
    from ..trajectory import run_steps, step_info

    md = from_args(MDSettings, args)
    frame, file_velocities, calc, atoms, last = start_run(args, required_arrays=(VELOCITIES_ANG_FS,))
    start, time_fs = 0, 0.0
    if last is not None:
        start, time_fs = int(last.info["step"]), float(last.info.get("time_fs", 0.0))
        if start >= md.steps:
            print(f"{args.output} already holds step {start} of --steps {md.steps}; raise --steps to continue")
            return 0
        velocities, how = last.arrays[VELOCITIES_ANG_FS], f"resumed from step {start} of {args.output}"
    else:
        velocities, how = initial_velocities(md, file_velocities, atoms)
    atoms.set_velocities(np.asarray(velocities) / units.fs)
    print(describe(calc))
    timestep = md.timestep * units.fs
    if md.temperature > 0:
        # the noise stream depends on the seed and the step it starts from, so a resumed run is reproducible
        rng = np.random.default_rng([md.seed, start])
        atoms.set_constraint(FixCom())  # a cluster in vacuum: no drift (ASE's advice over Langevin's fixcm)
        dyn = Langevin(
            atoms, timestep, temperature_K=md.temperature, friction=md.friction / units.fs, fixcm=False, rng=rng
        )
        kind = f"Langevin at {md.temperature} K, friction {md.friction} 1/fs"
    else:
        dyn = VelocityVerlet(atoms, timestep)
        kind = "NVE (velocity Verlet)"
    print(f"{kind} on {frame.name} ({len(atoms)} atoms), {md.timestep} fs x {md.steps} steps; velocities: {how}")
    atoms.calc = calc

    def record(step):
        info = {
            **step_info(calc, step),
            "time_fs": round(time_fs + (step - start) * md.timestep, 6),
            "e_kin_ev": float(atoms.get_kinetic_energy()),
            "temperature_k": float(atoms.get_temperature()),
        }
        return info, {VELOCITIES_ANG_FS: atoms.get_velocities() * units.fs}

    def line(step, info):
        e_pot = calc.results["energy"]
        return (
            f"step {step:5d}  t {info['time_fs']:8.2f} fs  energy {e_pot:.6f} eV  "
            f"total {e_pot + info['e_kin_ev']:.6f} eV  "
            f"T {info['temperature_k']:6.1f} K  fmax {info['fmax_ev_ang']:.4f} eV/Å  cycles {info['cycles']:3d}"
        )

    status, _, _ = run_steps(dyn, dyn.irun(steps=md.steps - start), args.output, start, last is not None, record, line)
    if status:
        return status
    print(f"done: {md.steps} steps; trajectory in {args.output}")
    return 0


def main(argv=None) -> int:
    """``deepks-es md`` with ``argv`` (the arguments after ``md``)."""
    return standalone_main(sys.modules[__name__], argv)
