"""Reading structures (through ASE) and turning them into PySCF molecules, with input checks.

Units: positions are Å at this boundary (``positions_ang``); PySCF molecules are built from them with
``unit='Angstrom'`` and everything after that is atomic units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DeePKSInputError

MIN_DISTANCE_ANG = 0.5


@dataclass
class Frame:
    """One structure.

    Attributes:
        name: ``<file stem>`` or ``<file stem>:<index>`` for multi-frame files.
        source: the file it came from.
        numbers: (natm,) atomic numbers.
        positions_ang: (natm, 3) Å.
        charge: total charge (e).
        multiplicity: 2S+1.
        info: the file's per-frame key=value fields (extxyz comment line).
    """

    name: str
    source: str
    numbers: np.ndarray
    positions_ang: np.ndarray
    charge: int = 0
    multiplicity: int = 1
    info: dict | None = None

    @property
    def symbols(self) -> list:
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    @property
    def nelectron(self) -> int:
        return int(self.numbers.sum()) - self.charge


def _spin_from_info(info: dict):
    if "multiplicity" in info:
        return int(info["multiplicity"])
    if "mult" in info:
        return int(info["mult"])
    if "spin" in info:  # PySCF convention: 2S
        return int(info["spin"]) + 1
    return None


def check_frame(frame: Frame, restricted: bool = True) -> Frame:
    """Validate electron count, spin and interatomic distances.

    Raises:
        DeePKSInputError: odd electron count with multiplicity 1 (or parity mismatch), an open shell when
            ``restricted``, or two atoms closer than 0.5 Å.
    """
    where = f"{frame.source} ({frame.name})"
    nelec, mult = frame.nelectron, frame.multiplicity
    if mult < 1 or (nelec - (mult - 1)) % 2 != 0 or nelec < mult - 1:
        raise DeePKSInputError(
            f"{where}: {nelec} electrons cannot have multiplicity {mult}; give the right charge/multiplicity "
            "in the comment line (charge=0 multiplicity=1) or with --charge/--multiplicity"
        )
    if restricted and mult != 1:
        raise DeePKSInputError(
            f"{where}: multiplicity {mult} is open-shell; deepks-es runs restricted closed-shell SCF (multiplicity 1)"
        )
    pos = frame.positions_ang
    if len(pos) > 1:
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(len(pos)) * 1e9
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] < MIN_DISTANCE_ANG:
            raise DeePKSInputError(
                f"{where}: atoms {i} ({frame.symbols[i]}) and {j} ({frame.symbols[j]}) are {d[i, j]:.3f} Å apart "
                f"(< {MIN_DISTANCE_ANG} Å); check the coordinates and their unit (Å expected)"
            )
    return frame


def read_frames(paths, charge: int | None = None, multiplicity: int | None = None, restricted: bool = True) -> list:
    """Read every frame of every file (xyz, extxyz; format from the suffix, through ``ase.io.read``).

    Charge and multiplicity come from the flags when given, else from each frame's comment line
    (``charge=``, ``multiplicity=``/``mult=``, or PySCF's ``spin=`` = 2S), else 0 and 1.

    Returns:
        list of checked :class:`Frame`.

    Raises:
        DeePKSInputError: a missing or unreadable file, a periodic frame, or a frame failing
            :func:`check_frame`.
    """
    import ase.io

    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DeePKSInputError(f"structure file {path} not found")
        try:
            images = ase.io.read(str(path), index=":")
        except Exception as exc:  # ASE raises many types for malformed files
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DeePKSInputError(
                f"cannot read structure file {path}: {msg}; give an xyz/extxyz file (format from the suffix)"
            ) from None
        if not images:
            raise DeePKSInputError(f"structure file {path} holds no structure")
        for k, atoms in enumerate(images):
            name = path.stem if len(images) == 1 else f"{path.stem}:{k}"
            if atoms.pbc.any():
                raise DeePKSInputError(
                    f"{path} ({name}) is periodic (pbc={atoms.pbc.tolist()}); deepks-es treats finite "
                    "clusters: cut a cluster or set pbc=F"
                )
            info = dict(atoms.info)
            frame = Frame(
                name=name,
                source=str(path),
                numbers=np.asarray(atoms.numbers, dtype=int),
                positions_ang=np.asarray(atoms.positions, dtype=float),
                charge=int(charge if charge is not None else info.get("charge", 0)),
                multiplicity=int(multiplicity if multiplicity is not None else (_spin_from_info(info) or 1)),
                info=info,
            )
            frames.append(check_frame(frame, restricted))
    return frames


def frame_to_mol(frame: Frame, basis: str = "cc-pVDZ", verbose: int = 0):
    """A built ``pyscf.gto.Mole`` for ``frame``.

    Raises:
        DeePKSInputError: when PySCF does not know the basis for an element of the frame.
    """
    from pyscf import gto

    mol = gto.Mole()
    mol.atom = [(s, p) for s, p in zip(frame.symbols, frame.positions_ang)]
    mol.unit = "Angstrom"
    mol.basis = basis
    mol.charge = frame.charge
    mol.spin = frame.multiplicity - 1
    mol.verbose = verbose
    try:
        mol.build(dump_input=False, parse_arg=False)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise DeePKSInputError(
            f"{frame.source} ({frame.name}): PySCF cannot build basis {basis!r} for {sorted(set(frame.symbols))} "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); check --basis"
        ) from None
    return mol
