"""Writing results: JSON for scripts, extxyz for ML-potential codes, and the terminal summary.

This is the I/O boundary where atomic units become eV and Å (constants from ``pyscf.data.nist``). The keys
of the JSON record, with their shapes and units, are :data:`deepks_es.keys.SCF_OUTPUT` (a value in eV or Å
carries the unit in its name); extxyz has ``REF_energy`` (eV, = e_tot), ``REF_forces`` (eV/Å) and the
scalars :data:`deepks_es.keys.EXTXYZ_SCF_INFO` in the info line. Sign convention: forces = -gradient.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from pyscf.data.nist import AVOGADRO, BOHR, HARTREE2EV, HARTREE2J

from .errors import DeePKSInputError
from .keys import EXTXYZ_SCF_INFO, REF_ENERGY, REF_FORCES

EV_PER_ANG_PER_AU = HARTREE2EV / BOHR  # (eV/Å) per (Eh/bohr)
KCAL_PER_MOL_PER_HARTREE = HARTREE2J * AVOGADRO / 4184  # 627.509...


def check_output_path(path, flag: str, folder: bool = False, inputs=()) -> None:
    """Refuse, before any compute, an output that could not be written or would overwrite an input.

    Args:
        path: the output file, or folder with ``folder=True`` (created when missing).
        flag: how the user gave it (``--output``), for the message.
        inputs: paths the output must not be (the structure files of the run).

    Raises:
        DeePKSInputError: a folder where a file is wanted or a file where a folder is wanted, an input file,
            or a place where no file can be created (missing or read-only parent, a file as parent).
    """
    path = Path(path)
    where = path if folder else path.parent
    if folder and path.exists() and not path.is_dir():
        raise DeePKSInputError(f"{flag} {path} is a file, not a folder; give a folder path")
    if not folder and path.is_dir():
        raise DeePKSInputError(f"{flag} {path} is a folder; give a file path")
    if not folder and path.exists() and any(Path(p).exists() and path.samefile(p) for p in inputs):
        raise DeePKSInputError(f"{flag} {path} is one of the input files; give another output path")
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".deepks-es-write-test"):
            pass
    except OSError as exc:
        raise DeePKSInputError(
            f"{flag} {path} cannot be written ({exc.strerror or exc}); give a writable path"
        ) from None


def to_record(frame, result: dict, meta: dict) -> dict:
    """Plain JSON-ready record of one structure's result (keys, shapes and units:
    :data:`deepks_es.keys.SCF_OUTPUT`); ``meta`` holds model, model_sha256, model_trained, basis, xc,
    density_fit."""
    ev = lambda x: None if x is None else float(x) * HARTREE2EV  # noqa: E731
    forces = None if result["de"] is None else (-result["de"] * EV_PER_ANG_PER_AU).tolist()
    return {
        "name": frame.name,
        "source": frame.source,
        "symbols": frame.symbols,
        "charge": frame.charge,
        "multiplicity": frame.multiplicity,
        "positions_ang": np.asarray(frame.positions_ang).tolist(),
        "e_tot": result["e_tot"],
        "e_delta": result["e_delta"],
        "forces_ev_ang": forces,
        "mo_energy_ev": (np.asarray(result["mo_energy"]) * HARTREE2EV).tolist(),
        "mo_occ": np.asarray(result["mo_occ"]).tolist(),
        "homo_ev": ev(result["homo"]),
        "lumo_ev": ev(result["lumo"]),
        "gap_ev": ev(result["gap"]),
        "converged": result["converged"],
        "cycles": result["cycles"],
        "scf_attempts": result["scf_attempts"],
        "wall_s": result["wall_s"],
        **meta,
    }


OUTPUT_FORMATS = {".json": "json", ".extxyz": "extxyz", ".xyz": "extxyz"}


def output_format(path) -> str:
    """``"json"`` or ``"extxyz"`` from the suffix of ``path``.

    Raises:
        DeePKSInputError: for another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise DeePKSInputError(f"--output {path}: unknown suffix {suffix!r}; use .json or .extxyz")
    return OUTPUT_FORMATS[suffix]


def write_records(frames, records: list, path) -> None:
    """Write records to ``path``, format by suffix: ``.json`` (a list, or one object for one structure)
    or ``.extxyz``/``.xyz`` (ASE extended XYZ).

    Raises:
        DeePKSInputError: for another suffix.
    """
    path = Path(path)
    if output_format(path) == "json":
        text = json.dumps(records[0] if len(records) == 1 else records, indent=1) + "\n"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        write_extxyz(
            path,
            [
                (
                    f.numbers,
                    f.positions_ang,
                    rec["e_tot"] * HARTREE2EV,
                    rec["forces_ev_ang"],
                    {k: rec.get(k) for k in EXTXYZ_SCF_INFO},
                )
                for f, rec in zip(frames, records)
            ],
        )


def write_extxyz(path, frames) -> None:
    """Extended XYZ through ASE, the one writer of labelled frames.

    Args:
        frames: iterable of (numbers (natm,), positions_ang (natm, 3) Å, energy in eV or None, forces
            (natm, 3) eV/Å or None, info dict of scalars; None values are left out). Energy and forces are written as
            ``REF_energy`` and ``REF_forces``: ASE's own ``energy``/``forces`` keys belong to its calculator
            and some trainers drop them.
    """
    import ase.io

    images = [_labelled_atoms(*frame) for frame in frames]
    ase.io.write(str(path), images, format="extxyz")


def _labelled_atoms(numbers, positions_ang, energy_ev, forces_ev_ang, info, arrays=None):
    """A plain ``ase.Atoms`` (no calculator) carrying ``REF_energy``, ``REF_forces``, ``info`` (None values
    left out) and per-atom ``arrays`` ({name: (natm, ...)})."""
    import ase

    atoms = ase.Atoms(numbers=numbers, positions=positions_ang)
    atoms.info[REF_ENERGY] = energy_ev
    atoms.info.update({k: v for k, v in info.items() if v is not None})
    if forces_ev_ang is not None:
        atoms.arrays[REF_FORCES] = np.asarray(forces_ev_ang)
    for name, value in (arrays or {}).items():
        atoms.arrays[name] = np.asarray(value)
    return atoms


def append_extxyz(path, numbers, positions_ang, energy_ev, forces_ev_ang, info, arrays=None) -> None:
    """Append one labelled frame (keys as :func:`write_extxyz`, plus per-atom ``arrays``) to an extended XYZ
    file and push it to disk (one ``write``, then flush and fsync): a run killed later keeps every frame
    appended before.

    Args:
        numbers: (natm,) atomic numbers.
        positions_ang: (natm, 3) Å.
        energy_ev: ``REF_energy``, eV.
        forces_ev_ang: ``REF_forces``, (natm, 3) eV/Å, or None.
        info: scalars of the info line; None values are left out.
        arrays: optional extra per-atom arrays, {name: (natm, 3)} (e.g. ``velocities_ang_fs``).
    """
    import io

    import ase.io

    text = io.StringIO()
    ase.io.write(text, _labelled_atoms(numbers, positions_ang, energy_ev, forces_ev_ang, info, arrays), format="extxyz")
    with open(path, "a") as fd:
        fd.write(text.getvalue())
        fd.flush()
        os.fsync(fd.fileno())


def summary(rec: dict) -> str:
    """Readable multi-line summary of one record (energies in Eh, orbital energies in eV)."""
    fmt = lambda x: "n/a" if x is None else f"{x:.4f} eV"  # noqa: E731
    conv = "yes" if rec["converged"] else "NO (last energy shown)"
    lines = [
        f"{rec['name']}  ({len(rec['symbols'])} atoms, charge {rec['charge']}, multiplicity {rec['multiplicity']})",
        f"  e_tot      {rec['e_tot']:.10f} Eh",
        f"  e_delta    {rec['e_delta']:.10f} Eh",
        f"  HOMO {fmt(rec['homo_ev'])}   LUMO {fmt(rec['lumo_ev'])}   gap {fmt(rec['gap_ev'])}",
        f"  converged  {conv} after {rec['cycles']} cycles"
        + (f" (retries: {', '.join(a[0] for a in rec['scf_attempts'][1:])})" if len(rec["scf_attempts"]) > 1 else ""),
    ]
    if rec["forces_ev_ang"] is not None:
        lines.append("  forces (eV/Å):")
        for sym, f in zip(rec["symbols"], rec["forces_ev_ang"]):
            lines.append(f"    {sym:<2s} {f[0]:12.6f} {f[1]:12.6f} {f[2]:12.6f}")
    lines.append(f"  wall time  {rec['wall_s']:.1f} s")
    return "\n".join(lines)
