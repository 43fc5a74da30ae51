"""Trajectories of ``deepks-es opt`` and ``deepks-es md``: one extxyz frame per step, appended as the run
goes, and read back to resume a run.

Every frame has ``REF_energy`` (eV) and ``REF_forces`` (eV/Å, = -gradient) like every labelled extxyz of
deepks-es (:func:`deepks_es.output.write_extxyz`), the step's info fields
:data:`deepks_es.keys.TRAJECTORY_INFO` (and :data:`~deepks_es.keys.TRAJECTORY_MD_INFO` for MD), and for MD
the velocities ``velocities_ang_fs`` (Å/fs). Frames are flushed to disk one by one, so a killed run keeps
every finished step, and a rerun with the same output continues from the last one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DeePKSInputError
from .keys import REF_ENERGY, REF_FORCES, TRAJECTORY_INFO
from .output import append_extxyz, check_output_path
from .structures import read_frames

#: run settings a resumed trajectory must share with the run that continues it
RESUME_KEYS = ("charge", "multiplicity", "model_sha256", "basis", "xc", "density_fit", "grid_level")


def check_trajectory_output(path, input_path) -> None:
    """Refuse, before any compute, an ``--output`` that is not ``.extxyz``/``.xyz``, cannot be written or
    is the input file.

    Raises:
        DeePKSInputError: naming the path and the fix.
    """
    if Path(path).suffix.lower() not in (".extxyz", ".xyz"):
        raise DeePKSInputError(f"--output {path}: a trajectory is written as extxyz; give a path ending in .extxyz")
    check_output_path(path, "--output", inputs=[input_path])


def read_start(path, charge=None, multiplicity=None):
    """The structure a run starts from: the only frame of ``path``, or the last one of a multi-frame file
    (a restart from another trajectory), with its velocities when the file has them.

    Args:
        path: an xyz/extxyz file.
        charge, multiplicity: the flags (None: the comment line, else 0 and 1).

    Returns:
        (frame, velocities): the :class:`~deepks_es.structures.Frame` (checked), and (natm, 3) Å/fs from
        ``velocities_ang_fs`` or ASE's ``momenta`` in the file, or None.

    Raises:
        DeePKSInputError: a folder, a missing or unreadable file, or a frame that cannot run (periodic,
            impossible charge/multiplicity, atoms too close; every frame of the file is checked).
    """
    import ase.io
    from ase import units

    from .keys import VELOCITIES_ANG_FS

    if Path(path).is_dir():
        raise DeePKSInputError(f"{path} is a folder; give one xyz/extxyz file (its last frame is used)")
    frame = read_frames([path], charge=charge, multiplicity=multiplicity)[-1]
    image = ase.io.read(str(path), index=-1)
    velocities = None
    if VELOCITIES_ANG_FS in image.arrays:
        velocities = np.asarray(image.arrays[VELOCITIES_ANG_FS], dtype=float)
    elif image.has("momenta"):
        velocities = image.get_velocities() * units.fs  # ASE's Å / (Å sqrt(u/eV)) -> Å/fs
    return frame, velocities


def _cut_torn_tail(path: Path):
    """Cut an incomplete last frame (a run killed while writing) off the file.

    Returns:
        the number of bytes cut (0 when the file ends with a complete frame).

    Raises:
        DeePKSInputError: a file that does not start like an XYZ frame.
    """
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    end = index = 0
    while index < len(lines):
        try:
            natm = int(lines[index])
        except ValueError:
            break
        block = lines[index : index + natm + 2]
        if len(block) < natm + 2 or not block[-1].endswith(b"\n"):
            break
        end += sum(len(line) for line in block)
        index += natm + 2
    if end == 0 and lines and not lines[0].strip().isdigit():
        raise DeePKSInputError(
            f"--output {path} exists and is not an extxyz trajectory; give another --output (a rerun with the "
            "same --output resumes the trajectory written there)"
        )
    if end < len(data):
        with open(path, "r+b") as fd:
            fd.truncate(end)
    return len(data) - end


def read_trajectory(path, required_arrays=()) -> list:
    """The frames of a trajectory written by :func:`append_step`, to resume it; [] when there is none yet.

    An incomplete last frame (a run killed while writing it) is cut off the file first, with a note on
    stdout.

    Args:
        required_arrays: per-atom arrays every frame must have (``velocities_ang_fs`` to resume MD).

    Returns:
        list of ``ase.Atoms`` with ``REF_energy``, ``step`` (and the other info fields) and ``REF_forces``.

    Raises:
        DeePKSInputError: a file that is not a deepks-es trajectory (naming what is missing) or lacks
            ``required_arrays``.
    """
    import ase.io

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    cut = _cut_torn_tail(path)
    if cut:
        print(f"cut an incomplete last frame ({cut} bytes) off {path}")
    if path.stat().st_size == 0:
        return []
    try:
        frames = ase.io.read(str(path), index=":", format="extxyz")
    except Exception as exc:  # ASE raises many types for malformed files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DeePKSInputError(f"--output {path} cannot be read as extxyz ({msg}); give another --output") from None
    for name, have in (
        ("REF_energy and step (info)", lambda a: REF_ENERGY in a.info and "step" in a.info),
        (f"{REF_FORCES} (per atom)", lambda a: REF_FORCES in a.arrays),
        *((f"{key} (per atom)", lambda a, key=key: key in a.arrays) for key in required_arrays),
    ):
        if not all(have(a) for a in frames):
            raise DeePKSInputError(
                f"--output {path} has frames without {name}: not a trajectory of this command; give another --output"
            )
    return frames


def check_resume(last, frame, meta: dict, path) -> None:
    """Refuse to continue a trajectory of another structure or other settings.

    Args:
        last: the last ``ase.Atoms`` of the trajectory.
        frame: the :class:`~deepks_es.structures.Frame` of this run's input.
        meta: this run's values of :data:`RESUME_KEYS`.

    Raises:
        DeePKSInputError: other atoms, or a setting that differs, naming both values.
    """
    if list(last.numbers) != list(frame.numbers):
        raise DeePKSInputError(
            f"--output {path} holds a trajectory of {last.get_chemical_formula()}, the input {frame.source} is "
            f"{''.join(frame.symbols)} in another order or composition; give another --output"
        )
    for key in RESUME_KEYS:
        old, new = last.info.get(key), meta[key]
        if str(old) != str(new):
            raise DeePKSInputError(
                f"--output {path} was written with {key}={old}, this run has {key}={new}; rerun with the same "
                "settings to resume it, or give another --output"
            )


def step_info(calc, step: int) -> dict:
    """The info fields :data:`deepks_es.keys.TRAJECTORY_INFO` of the geometry ``calc`` computed last."""
    stats = calc.stats
    forces = calc.results["forces"]
    info = {
        "step": int(step),
        "e_tot": stats["e_tot"],
        "e_delta": stats["e_delta"],
        "fmax_ev_ang": float(np.linalg.norm(forces, axis=1).max()),
        "cycles": stats["cycles"],
        "converged": stats["converged"],
        "wall_s": round(stats["scf_s"] + (stats["grad_s"] or 0.0), 3),
        **run_meta(calc),
    }
    assert set(info) == set(TRAJECTORY_INFO)
    return info


def run_meta(calc) -> dict:
    """This run's values of :data:`RESUME_KEYS` (``model_sha256`` is ``none`` without a correction)."""
    return {
        "charge": calc.charge,
        "multiplicity": calc.multiplicity,
        "model_sha256": calc.parameters["model_sha256"] or "none",
        "basis": calc.basis,
        "xc": calc.xc,
        "density_fit": calc.settings.density_fit,
        "grid_level": calc.settings.grid_level,
    }


def append_step(path, atoms, info: dict, arrays=None) -> None:
    """Append the current frame of ``atoms`` (its calculator's energy and forces) to the trajectory."""
    calc = atoms.calc
    append_extxyz(path, atoms.numbers, atoms.positions, calc.results["energy"], calc.results["forces"], info, arrays)


def run_steps(dyn, steps, output, start: int, resumed: bool, record, line) -> tuple[int, int, object]:
    """Drive an ASE optimiser or MD run step by step: append each new step to the trajectory, print a line.

    Args:
        dyn: the ASE dynamics (its ``nsteps`` counts the steps of this run).
        steps: ``dyn.irun(...)``, the generator to drive (an optimiser yields its converged flag).
        output: the extxyz trajectory; start: the step the run starts from; resumed: the file already holds
            step ``start`` (a resumed run does not write it again).
        record: ``record(step) -> (info, arrays)``, what to write with the frame (arrays may be None).
        line: ``line(step, info) -> str``, the progress line (the wall time of the step is appended).

    Returns:
        (exit status, last step, last value yielded): status 1 when an SCF did not converge (said on stderr
        with the steps kept in ``output``), else 0.
    """
    import sys
    import time

    from .ase import SCFNotConvergedError

    step, value, written, t_last = start, None, (start if resumed else None), time.perf_counter()
    try:
        for value in steps:  # noqa: B007 (the last value is returned)
            step = start + dyn.nsteps
            info, arrays = record(step)
            if not (resumed and dyn.nsteps == 0):  # a resumed run's first frame is already in the file
                append_step(output, dyn.atoms, info, arrays)
                written = step
            now = time.perf_counter()
            print(f"{line(step, info)}  {now - t_last:.1f} s", flush=True)
            t_last = now
    except SCFNotConvergedError as exc:
        kept = "no step was written" if written is None else f"steps 0-{written} are kept in {output}"
        print(f"deepks-es: error: {exc}; {kept}", file=sys.stderr)
        return 1, step, value
    return 0, step, value
