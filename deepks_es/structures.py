"""Reading structures (through ASE) and turning them into PySCF molecules, with input checks.

Units: positions are Å at this boundary (``positions_ang``); PySCF molecules are built from them with
``unit='Angstrom'`` and everything after that is atomic units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DeePKSInputError
from .settings import DEFAULT_BASIS

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
        error: why the frame cannot be run ("" when it can; see :func:`read_frames` ``check``).
    """

    name: str
    source: str
    numbers: np.ndarray
    positions_ang: np.ndarray
    charge: int = 0
    multiplicity: int = 1
    info: dict | None = None
    error: str = ""

    @property
    def symbols(self) -> list:
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    @property
    def nelectron(self) -> int:
        return int(self.numbers.sum()) - self.charge


def frame_from_record(record: dict) -> Frame:
    """The structure of a label-store record (name, source, numbers, positions, charge, multiplicity)."""
    return Frame(
        name=record["name"],
        source=record["source"],
        numbers=np.asarray(record["numbers"]),
        positions_ang=np.asarray(record["positions_ang"]),
        charge=record["charge"],
        multiplicity=record["multiplicity"],
    )


def _integer(value, what: str, where: str) -> int:
    """An integer from a comment-line field or flag (``charge=0``, ``multiplicity=1``)."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (number and float(value).is_integer()):
        value = value.item() if isinstance(value, np.generic) else value
        raise DeePKSInputError(f"{where}: {what}={value!r} is not an integer; write e.g. charge=0 multiplicity=1")
    return int(value)


def _charge_and_multiplicity(info: dict, charge, multiplicity, where: str) -> tuple:
    """(charge, multiplicity): the flags when given, else the comment line (``charge=``,
    ``multiplicity=``/``mult=``, or PySCF's ``spin=`` = 2S), else 0 and 1."""
    if charge is None:
        charge = info.get("charge", 0)
    if multiplicity is None:
        if "multiplicity" in info or "mult" in info:
            multiplicity = info.get("multiplicity", info.get("mult"))
        elif "spin" in info:
            multiplicity = _integer(info["spin"], "spin", where) + 1
        else:
            multiplicity = 1
    return _integer(charge, "charge", where), _integer(multiplicity, "multiplicity", where)


def check_frame(frame: Frame, restricted: bool = True) -> Frame:
    """Validate coordinates, electron count, spin and interatomic distances.

    Raises:
        DeePKSInputError: a coordinate that is not finite, no electrons, a multiplicity below 1, odd
            electron count with multiplicity 1 (or parity mismatch), an open shell when ``restricted``, or
            two atoms closer than 0.5 Å.
    """
    where = f"{frame.source} ({frame.name})"
    if not np.isfinite(frame.positions_ang).all():
        bad = int(np.argwhere(~np.isfinite(frame.positions_ang))[0, 0])
        raise DeePKSInputError(f"{where}: atom {bad} has a coordinate that is not a finite number; fix the file")
    nelec, mult = frame.nelectron, frame.multiplicity
    if nelec < 1:
        raise DeePKSInputError(f"{where}: charge {frame.charge} leaves {nelec} electrons; check charge= or --charge")
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


STRUCTURE_SUFFIXES = (".xyz", ".extxyz")


def _expand(paths) -> list:
    """Files as given; folders: DeePMD systems (a ``type.raw`` inside) and xyz/extxyz files below them."""
    out = []
    for path in map(Path, paths):
        if path.is_dir():
            systems = sorted(p.parent for p in path.rglob("type.raw"))
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in STRUCTURE_SUFFIXES)
            if not systems and not files:
                raise DeePKSInputError(f"folder {path} holds no xyz/extxyz file and no DeePMD system (type.raw)")
            out += systems + files
        elif path.exists():
            out.append(path)
        else:
            raise DeePKSInputError(f"structure file {path} not found")
    return out


def _read_images(path: Path) -> list:
    """ASE Atoms of every frame of a file, or of a DeePMD system folder (through dpdata)."""
    try:
        if path.is_dir():
            import dpdata

            system = dpdata.System(str(path), fmt="deepmd/npy")
            return system.to("ase/structure")
        import ase.io

        return ase.io.read(str(path), index=":")
    except Exception as exc:  # ASE and dpdata raise many types for malformed input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "DeePMD system" if path.is_dir() else "structure file"
        raise DeePKSInputError(
            f"cannot read {kind} {path}: {msg}; give xyz/extxyz files (format from the suffix) or DeePMD system folders"
        ) from None


def read_frames(
    paths, charge: int | None = None, multiplicity: int | None = None, restricted: bool = True, check: bool = True
) -> list:
    """Read every frame of every input: xyz/extxyz files (through ``ase.io.read``, format from the suffix),
    DeePMD system folders (through dpdata), or folders holding either.

    Charge and multiplicity come from the flags when given, else from each frame's comment line
    (``charge=``, ``multiplicity=``/``mult=``, or PySCF's ``spin=`` = 2S), else 0 and 1.

    Args:
        check: raise on the first frame failing :func:`check_frame` or periodic (default); with False
            such frames are returned with their message in ``Frame.error`` (batch labelling records
            them per frame and goes on).

    Returns:
        list of :class:`Frame`.

    Raises:
        DeePKSInputError: a missing or unreadable file or folder, a charge or multiplicity that is not an
            integer; with ``check``, a periodic frame or a frame failing :func:`check_frame`.
    """
    frames = []
    for path in _expand(paths):
        images = _read_images(path)
        if not images:
            raise DeePKSInputError(f"structure file {path} holds no structure")
        stem = path.name if path.is_dir() else path.stem
        for k, atoms in enumerate(images):
            info = dict(atoms.info)
            frame = Frame(
                name=stem if len(images) == 1 else f"{stem}:{k}",
                source=str(path),
                numbers=np.asarray(atoms.numbers, dtype=int),
                positions_ang=np.asarray(atoms.positions, dtype=float),
                info=info,
            )
            where = f"{path} ({frame.name})"
            frame.charge, frame.multiplicity = _charge_and_multiplicity(info, charge, multiplicity, where)
            try:
                if atoms.pbc.any():
                    raise DeePKSInputError(
                        f"{path} ({frame.name}) is periodic (pbc={atoms.pbc.tolist()}); deepks-es treats finite "
                        "clusters: cut a cluster or set pbc=F"
                    )
                check_frame(frame, restricted)
            except DeePKSInputError as exc:
                if check:
                    raise
                frame.error = str(exc)
            frames.append(frame)
    return frames


def frame_to_mol(frame: Frame, basis: str = DEFAULT_BASIS, verbose: int = 0):
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
