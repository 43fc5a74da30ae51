"""The resumable label store: one HDF5 file (h5py), one record per frame, keyed by a content hash.

Layout::

    /                      attrs: format="deepks-es-labels", format_version=1, the run metadata
                           (method, basis, xc, model_sha256, grid_level, density_fit, ...; values that are
                           not str/int/float/bool are JSON strings, their names listed in attr json_fields)
    /frames/<key>          one group per frame, <key> = :func:`frame_key`
        attrs              name, source, charge, multiplicity, converged, cycles, error, complete
        datasets           numbers, positions_ang, e_tot, forces, mo_energy, mo_occ, homo, lumo, gap, wall_s,
                           and the optional e_tot_std, force_std, max_devi_f, dm, fock, ovlp, mo_coeff;
                           a field that is None is not stored; each quantity with a unit has a ``units`` attr

Units: atomic units (Eh, Eh/bohr) except ``positions_ang`` (Å), as the structures were read;
``forces`` = -gradient.

Crash safety (a SIGKILL at any moment loses at most the frames in flight): the store has a single
writer, which never writes the HDF5 file in place. :meth:`LabelStore.write` puts each finished record in
its own small HDF5 file ``<store>.journal/<key>.h5``, written under a temporary name and renamed, so a
record is either whole or absent. :meth:`LabelStore.merge` (at the end of a batch, and when a writer
reopens a store after a kill) copies the store to a temporary file, adds the journal's records, renames
the copy over the store and only then deletes the journal; a kill during a merge leaves the old store and
the journal intact, and a repeated merge replaces rather than duplicates. Readers see the store and the
journal together. A merge copies the whole file once per batch (cheap beside the SCF runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from .errors import DeePKSInputError

FORMAT = "deepks-es-labels"
FORMAT_VERSION = 1

#: metadata fields that must agree between the store and a run that adds to it
IDENTITY_FIELDS = ("method", "basis", "xc", "model_sha256", "grid_level", "density_fit")

#: record fields stored as group attrs: name -> type
ATTR_FIELDS = {
    "name": str,  # <file stem> or <file stem>:<index>
    "source": str,  # the structure file
    "charge": int,  # e
    "multiplicity": int,  # 2S+1
    "converged": bool,
    "cycles": int,  # SCF cycles
    "error": str,  # "" when fine
}

#: record fields stored as datasets: name -> (dtype, units); shapes in the comments
DATASET_FIELDS = {
    "numbers": ("int64", ""),  # (natm,)
    "positions_ang": ("float64", "angstrom"),  # (natm, 3)
    "e_tot": ("float64", "Eh"),  # (), nan for a failed frame
    "forces": ("float64", "Eh/bohr"),  # (natm, 3) = -gradient
    "mo_energy": ("float64", "Eh"),  # (nmo,)
    "mo_occ": ("float64", ""),  # (nmo,)
    "homo": ("float64", "Eh"),  # ()
    "lumo": ("float64", "Eh"),  # ()
    "gap": ("float64", "Eh"),  # ()
    "wall_s": ("float64", "s"),  # ()
    # optional: committee spread
    "e_tot_std": ("float64", "Eh"),  # ()
    "force_std": ("float64", "Eh/bohr"),  # (natm,)
    "max_devi_f": ("float64", "Eh/bohr"),  # ()
    # optional: matrices
    "dm": ("float64", ""),  # (nao, nao)
    "fock": ("float64", "Eh"),  # (nao, nao)
    "ovlp": ("float64", ""),  # (nao, nao)
    "mo_coeff": ("float64", ""),  # (nao, nmo)
}

#: fields a record passed to :meth:`LabelStore.write` must have (the others may be missing or None)
REQUIRED_FIELDS = ("key", *ATTR_FIELDS, "numbers", "positions_ang", "e_tot", "wall_s")
MATRIX_FIELDS = ("dm", "fock", "ovlp", "mo_coeff")


def frame_key(numbers, positions_ang, charge, multiplicity, method: str, basis: str, model_sha256) -> str:
    """Content hash of one labelling task.

    SHA-256 over the JSON (sorted keys) of charge, multiplicity, method, basis and model_sha256, then the
    exact little-endian int64 bytes of ``numbers`` (natm,) and float64 bytes of ``positions_ang``
    (natm, 3) Å. Any change of geometry (to the last bit), charge, spin, method, basis or model gives
    another key.

    Args:
        model_sha256: list of model file hashes (one per committee member), or None for no model.

    Returns:
        the first 40 hex digits.
    """
    fields = {
        "charge": int(charge),
        "multiplicity": int(multiplicity),
        "method": method,
        "basis": basis,
        "model_sha256": None if model_sha256 is None else list(model_sha256),
    }
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    h.update(np.ascontiguousarray(numbers, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(positions_ang, dtype="<f8").tobytes())
    return h.hexdigest()[:40]


def _plain(value):
    """``value`` with numpy scalars and arrays made plain Python (JSON round trip)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist()))


class LabelStore:
    """A label store on disk; see the module docstring for layout, units and crash safety.

    Args:
        path: the HDF5 file.
        metadata: None to open an existing store (for export and reading). Otherwise the run's settings:
            the store is created with them when ``path`` does not exist; an existing store must agree on
            :data:`IDENTITY_FIELDS`.

    Raises:
        DeePKSInputError: ``path`` missing (with ``metadata=None``) or not a label store, or an identity
            field differing from the store's.
    """

    def __init__(self, path, metadata: dict | None = None):
        self.path = Path(path)
        if metadata is not None and not self.path.exists():
            self._create(metadata)
        self._metadata = self._read_metadata()
        if metadata is not None:
            for field in IDENTITY_FIELDS:
                stored, new = self._metadata.get(field), _plain(metadata.get(field))
                if stored != new:
                    raise DeePKSInputError(
                        f"label store {self.path} was made with {field}={stored!r} but this run has {field}={new!r}; "
                        "use another --store path to start a new store"
                    )
            self.merge()  # records of a killed run

    def _create(self, metadata: dict) -> None:
        # built under a temporary name and renamed, so a kill never leaves a half-made store
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            json_fields = []
            for name, value in _plain(metadata).items():
                if name in ("format", "format_version", "json_fields"):
                    raise ValueError(f"metadata field {name!r} is reserved")
                if value is None or isinstance(value, (list, dict)):
                    value = json.dumps(value)
                    json_fields.append(name)
                f.attrs[name] = value
            f.attrs["json_fields"] = json.dumps(json_fields)
            f.create_group("frames")
        os.replace(tmp, self.path)

    def _read_metadata(self) -> dict:
        if not self.path.is_file():
            raise DeePKSInputError(f"label store {self.path} not found; check the path (labelling writes it)")
        if not h5py.is_hdf5(self.path):
            raise DeePKSInputError(f"{self.path} is not an HDF5 file, so not a label store; check the --store path")
        with h5py.File(self.path, "r") as f:
            attrs = {name: value.item() if isinstance(value, np.generic) else value for name, value in f.attrs.items()}
            if attrs.get("format") != FORMAT or "frames" not in f:
                raise DeePKSInputError(
                    f"{self.path} is not a deepks-es label store (no format={FORMAT!r} attr); check the --store path"
                )
        if attrs["format_version"] > FORMAT_VERSION:
            raise DeePKSInputError(
                f"label store {self.path} has format_version {attrs['format_version']}, newer than this "
                f"deepks-es reads ({FORMAT_VERSION}); upgrade deepks-es"
            )
        for name in json.loads(attrs.pop("json_fields")):
            attrs[name] = json.loads(attrs[name])
        del attrs["format"], attrs["format_version"]
        return attrs

    @property
    def metadata(self) -> dict:
        """The run metadata the store was created with (a copy)."""
        return dict(self._metadata)

    @property
    def journal(self) -> Path:
        """Folder of records written since the last merge."""
        return self.path.with_name(self.path.name + ".journal")

    def _journal_files(self) -> dict:
        return {p.stem: p for p in sorted(self.journal.glob("*.h5"))} if self.journal.is_dir() else {}

    def _iter_groups(self, keys=None):
        """(key, group) of every complete record, or of those among ``keys``; a journal record replaces
        the store's. The store file is opened once and each journal file while its group is in use, so a
        group is valid only until the next one is yielded."""
        journal = self._journal_files()
        with h5py.File(self.path, "r") as f:
            frames = f["frames"]
            for key in frames if keys is None else keys:
                group = None if key in journal else frames.get(key)
                if group is not None and group.attrs.get("complete", False):
                    yield key, group
        for key, path in journal.items():
            if keys is None or key in keys:
                with h5py.File(path, "r") as src:
                    yield key, src["record"]

    def keys(self) -> list:
        """Sorted keys of the complete records (store and journal)."""
        return sorted(key for key, _ in self._iter_groups())

    def __contains__(self, key) -> bool:
        return any(True for _ in self._iter_groups([key]))

    def __len__(self) -> int:
        return len(self.keys())

    def write(self, record: dict, overwrite: bool = False) -> None:
        """Add one record (see :data:`ATTR_FIELDS`, :data:`DATASET_FIELDS`; fields that are None or
        missing, other than :data:`REQUIRED_FIELDS`, are not stored) to the journal, atomically.

        Raises:
            ValueError: a required field is missing, or ``record['key']`` is already stored and
                ``overwrite`` is False (pass True to replace it, e.g. to retry a failed frame).
        """
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise ValueError(f"record lacks the fields {missing}")
        key = record["key"]
        if not overwrite and key in self:
            raise ValueError(
                f"frame {key} ({record['name']}) is already in {self.path}; pass overwrite=True to replace it"
            )
        self.journal.mkdir(exist_ok=True)
        tmp = self.journal / f"{key}.h5.tmp"
        with h5py.File(tmp, "w") as f:
            group = f.create_group("record")
            for name, kind in ATTR_FIELDS.items():
                group.attrs[name] = kind(record[name])
            for name, (dtype, units) in DATASET_FIELDS.items():
                if record.get(name) is not None:
                    dataset = group.create_dataset(name, data=np.asarray(record[name], dtype=dtype))
                    if units:
                        dataset.attrs["units"] = units
            group.attrs["complete"] = True
        os.replace(tmp, self.journal / f"{key}.h5")

    def merge(self) -> int:
        """Fold the journal into the store file (copy, add, rename, then delete the journal).

        Returns:
            the number of records merged.
        """
        files = self._journal_files()
        if not files:
            shutil.rmtree(self.journal, ignore_errors=True)  # only temporary files of a killed write
            return 0
        tmp = self.path.with_name(self.path.name + ".merge.tmp")
        shutil.copyfile(self.path, tmp)
        with h5py.File(tmp, "a") as f:
            frames = f["frames"]
            for key, path in files.items():
                if key in frames:
                    del frames[key]
                with h5py.File(path, "r") as src:
                    src.copy(src["record"], frames, name=key)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        shutil.rmtree(self.journal)
        return len(files)

    @staticmethod
    def _read_group(key: str, group, matrices: bool) -> dict:
        record = {"key": key, **{name: kind(group.attrs[name]) for name, kind in ATTR_FIELDS.items()}}
        for name in DATASET_FIELDS:
            value = group[name][()] if name in group and (matrices or name not in MATRIX_FIELDS) else None
            record[name] = float(value) if value is not None and np.ndim(value) == 0 else value
        return record

    def read(self, key: str, matrices: bool = True) -> dict:
        """One record as written; every field of :data:`ATTR_FIELDS` and :data:`DATASET_FIELDS` is present,
        None where it was not stored (and for the matrices when ``matrices`` is False). Scalars are Python
        float/int/bool/str, the rest numpy arrays.

        Raises:
            KeyError: no complete record ``key``.
        """
        for found, group in self._iter_groups([key]):
            return self._read_group(found, group, matrices)
        raise KeyError(f"no complete record {key} in {self.path}")

    def records(self, include_unconverged=False, include_failed=False, matrices: bool = True) -> list:
        """The complete records (as :meth:`read`), sorted by (source, name).

        A record is failed when its ``error`` is set or ``e_tot`` is not finite; it is unconverged when
        not failed and not ``converged``. Both kinds are left out unless asked for.
        ``matrices=False`` skips reading dm/fock/ovlp/mo_coeff (None), which can be large.
        """
        out = []
        for key, group in self._iter_groups():
            record = self._read_group(key, group, matrices)
            failed = bool(record["error"]) or not np.isfinite(record["e_tot"])
            if include_failed if failed else (record["converged"] or include_unconverged):
                out.append(record)
        return sorted(out, key=lambda record: (record["source"], record["name"]))


def import_labels(frames, e_tot, forces, path, method: str, basis: str, reference: str) -> LabelStore:
    """Write externally computed reference labels (e.g. CCSD energies from another code) into a store, so
    that training and evaluation read them like any other labels.

    Args:
        frames: :class:`~deepks_es.structures.Frame` list.
        e_tot: (nframe,) total energies, Eh.
        forces: (nframe,) list of (natm, 3) forces in Eh/bohr, or None (energy-only labels).
        path: the store to create or extend; method and basis name the level of theory.
        reference: where the numbers come from (kept in the store's metadata).

    Raises:
        DeePKSInputError: lengths that do not match the frames.
    """
    if len(e_tot) != len(frames) or (forces is not None and len(forces) != len(frames)):
        raise DeePKSInputError(f"import_labels: {len(frames)} frames but {len(e_tot)} energies / forces")
    meta = {"method": method, "basis": basis, "xc": "", "model_sha256": [], "grid_level": -1, "density_fit": False}
    store = LabelStore(path, {**meta, "reference": reference})
    for i, frame in enumerate(frames):
        key = frame_key(frame.numbers, frame.positions_ang, frame.charge, frame.multiplicity, method, basis, [])
        record = {
            "key": key,
            "name": frame.name,
            "source": frame.source,
            "charge": frame.charge,
            "multiplicity": frame.multiplicity,
            "converged": True,
            "cycles": 0,
            "error": "",
            "numbers": np.asarray(frame.numbers),
            "positions_ang": np.asarray(frame.positions_ang),
            "e_tot": float(e_tot[i]),
            "forces": None if forces is None else np.asarray(forces[i], dtype=float),
            "wall_s": 0.0,
        }
        if key not in store:
            store.write(record)
    store.merge()
    return store
