"""The resumable label store: one HDF5 file (h5py), one record per frame, keyed by a content hash.

Layout::

    /                      attrs: format="deepks-es-labels", format_version=1, the run metadata
                           (method, basis, xc, model_sha256, grid_level, density_fit, ...; values that are
                           not str/int/float/bool are JSON strings, their names listed in attr json_fields)
    /frames/<key>          one group per frame, <key> = :func:`frame_key`
        attrs              :data:`deepks_es.keys.RECORD_ATTRS` and ``complete``
        datasets           :data:`deepks_es.keys.RECORD_DATASETS` (shapes and units there); a field that is
                           None is not stored; each quantity with a unit has a ``units`` attr

Units: atomic units (Eh, Eh/bohr) except ``positions_ang`` (Å), as the structures were read;
``forces`` = -gradient.

One writer at a time: every write and merge happens under the store's writer lock, an OS file lock
(``flock``) on ``<store>.lock``, which the file also names (pid, host, start time, command). A batch holds
it from before it decides which frames to compute until its final merge, so a second ``deepks-es label``
on the same store stops at once with a one-line error naming the holder: two runs never compute a frame
twice or lose one. The OS releases the lock when its holder dies, so a killed run never leaves the store
locked. (``flock`` is not reliable on some network file systems: keep stores on local disk there.)

Crash safety (a SIGKILL at any moment loses at most the frames in flight): the writer never writes the
HDF5 file in place. :meth:`LabelStore.write` puts each finished record in its own small HDF5 file
``<store>.journal/<key>.h5``, written under a temporary name and renamed, so a record is either whole or
absent. A merge (when a writer takes the lock, picking up what a killed run left, and when it lets go)
copies the store to a temporary file, adds the journal's records, renames the copy over the store and only
then deletes the journal; a kill during a merge leaves the old store and the journal intact, and a
repeated merge replaces rather than duplicates. Readers take no lock: they see the store and the journal
together, and read again if a merge moved journal records into the store while they read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from .errors import DeePKSInputError
from .keys import LARGE_KEYS, RECORD_ATTRS, RECORD_DATASETS

FORMAT = "deepks-es-labels"
FORMAT_VERSION = 1

#: metadata fields that must agree between the store and a run that adds to it
IDENTITY_FIELDS = ("method", "basis", "xc", "model_sha256", "grid_level", "density_fit", "frozen_core")

#: size of the holder's name in the lock file (bytes)
LOCK_RECORD_BYTES = 512

#: fields a record passed to :meth:`LabelStore.write` must have (the others may be missing or None)
REQUIRED_FIELDS = ("key", *RECORD_ATTRS, "numbers", "positions_ang", "e_tot", "wall_s")


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


def geometry_key(record) -> str:
    """Key of a structure alone (numbers, positions to the bit, charge, multiplicity), from a store record
    (dict) or a :class:`~deepks_es.structures.Frame`."""
    r = record if isinstance(record, dict) else vars(record)
    return frame_key(r["numbers"], r["positions_ang"], r["charge"], r["multiplicity"], "geometry", "", None)


def _plain(value):
    """``value`` with numpy scalars and arrays made plain Python (JSON round trip)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist()))


def is_failed(record: dict) -> bool:
    """A record whose ``error`` is set or whose ``e_tot`` is not finite."""
    return bool(record["error"]) or not np.isfinite(record["e_tot"])


class LabelStore:
    """A label store on disk; see the module docstring for layout, units, the lock and crash safety.

    Args:
        path: the HDF5 file.
        metadata: None to open an existing store (for export and reading). Otherwise the run's settings:
            the store is created with them when ``path`` does not exist; an existing store must agree on
            :data:`IDENTITY_FIELDS`, and what a killed writer left is merged.

    Raises:
        DeePKSInputError: ``path`` missing (with ``metadata=None``), not a label store, truncated or
            damaged; an identity field differing from the store's; with ``metadata``, the store being
            written by another run (the message names it).
    """

    def __init__(self, path, metadata: dict | None = None):
        self.path = Path(path)
        self._lock_fd = None
        self._lock_depth = 0
        if metadata is not None and not self.path.exists():
            with self.lock():
                if not self.path.exists():
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

    @contextlib.contextmanager
    def _open(self):
        """The store file, read-only; a damaged file is named as such."""
        try:
            f = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise DeePKSInputError(f"label store {self.path} not found; check the path (labelling writes it)") from None
        except OSError as exc:
            raise DeePKSInputError(
                f"label store {self.path} is truncated or damaged ({str(exc).splitlines()[0]}); restore it from a "
                "copy, or move it away and label again into a new --store"
            ) from None
        with f:
            yield f

    def _read_metadata(self) -> dict:
        if not self.path.is_file():
            raise DeePKSInputError(f"label store {self.path} not found; check the path (labelling writes it)")
        if not h5py.is_hdf5(self.path):
            raise DeePKSInputError(f"{self.path} is not an HDF5 file, so not a label store; check the --store path")
        with self._open() as f:
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

    @property
    def lock_path(self) -> Path:
        """The lock file (it stays on disk; only the OS lock on it counts)."""
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def lock(self):
        """Hold the writer lock (re-entrant within this object). Taking it merges what a killed writer left;
        letting go merges this writer's journal.

        Raises:
            DeePKSInputError: another process (or another LabelStore object) holds it; the message names it.
        """
        if self._lock_depth == 0:
            self._acquire()
        self._lock_depth += 1
        try:
            if self._lock_depth == 1:
                self._merge_journal()
            yield self
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                try:
                    self._merge_journal()
                finally:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = None

    def _acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(20):  # the holder writes its name right after taking the lock
                holder = os.pread(fd, LOCK_RECORD_BYTES, 0).decode(errors="replace").strip()
                if holder:
                    break
                time.sleep(0.05)
            os.close(fd)
            raise DeePKSInputError(
                f"label store {self.path} is being written by {holder or 'another process'}; a store has one "
                "writer at a time: wait for that run to finish (then rerun: finished frames are skipped) or give "
                "another --store"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {started} ({' '.join(sys.argv)[:300]})"
        # one fixed-size write, so a reader never sees a half-written or empty name after the first
        os.pwrite(fd, holder.encode()[:LOCK_RECORD_BYTES].ljust(LOCK_RECORD_BYTES), 0)
        self._lock_fd = fd

    def _journal_files(self) -> dict:
        return {p.stem: p for p in sorted(self.journal.glob("*.h5"))} if self.journal.is_dir() else {}

    def _scan(self, read, keys=None) -> dict:
        """``{key: read(key, group)}`` over the complete records, or those among ``keys``; a journal record
        replaces the store's. Read again (a consistent snapshot) when a merge moved journal records into
        the store meanwhile."""
        for _ in range(10):
            journal = self._journal_files()
            out = {}
            with self._open() as f:
                frames = f["frames"]
                for key in frames if keys is None else keys:
                    group = None if key in journal else frames.get(key)
                    if group is not None and group.attrs.get("complete", False):
                        out[key] = read(key, group)
            try:
                for key, path in journal.items():
                    if keys is None or key in keys:
                        with h5py.File(path, "r") as src:
                            out[key] = read(key, src["record"])
            except FileNotFoundError:  # merged into the store by the writer while we read
                continue
            return out
        raise DeePKSInputError(f"label store {self.path} kept changing while being read; try again")

    def keys(self) -> list:
        """Sorted keys of the complete records (store and journal)."""
        return sorted(self._scan(lambda key, group: None))

    def __contains__(self, key) -> bool:
        return bool(self._scan(lambda key, group: None, [key]))

    def __len__(self) -> int:
        return len(self.keys())

    def contents(self) -> dict:
        """``{key: (failed, names of the stored datasets)}`` of every complete record, from one scan (what a
        rerun needs to decide which frames lack outputs now asked for)."""

        def read(key, group):
            failed = bool(group.attrs["error"]) or not np.isfinite(group["e_tot"][()])
            return failed, frozenset(group.keys())

        return self._scan(read)

    def write(self, record: dict, overwrite: bool = False) -> None:
        """Add one record (see :data:`~deepks_es.keys.RECORD_ATTRS`, :data:`~deepks_es.keys.RECORD_DATASETS`;
        fields that are None or missing, other than :data:`REQUIRED_FIELDS`, are not stored) to the journal,
        atomically, under the writer lock (taken here unless held, and then merged at once: batches hold
        the lock around all their writes).

        Raises:
            ValueError: a required field is missing, or ``record['key']`` is already stored and
                ``overwrite`` is False (pass True to replace it, e.g. to retry a failed frame).
            DeePKSInputError: another run holds the writer lock.
        """
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise ValueError(f"record lacks the fields {missing}")
        key = record["key"]
        with self.lock():
            if not overwrite and key in self:
                raise ValueError(
                    f"frame {key} ({record['name']}) is already in {self.path}; pass overwrite=True to replace it"
                )
            self.journal.mkdir(exist_ok=True)
            tmp = self.journal / f"{key}.h5.tmp"
            with h5py.File(tmp, "w") as f:
                group = f.create_group("record")
                for name, (kind, _) in RECORD_ATTRS.items():
                    group.attrs[name] = kind(record[name])
                for name, (dtype, _, units) in RECORD_DATASETS.items():
                    if record.get(name) is not None:
                        dataset = group.create_dataset(name, data=np.asarray(record[name], dtype=dtype))
                        if units:
                            dataset.attrs["units"] = units
                group.attrs["complete"] = True
            os.replace(tmp, self.journal / f"{key}.h5")

    def merge(self) -> None:
        """Fold the journal into the store file, under the writer lock.

        Raises:
            DeePKSInputError: another run holds the writer lock.
        """
        with self.lock():
            pass  # taking and letting go of the lock merge

    def _merge_journal(self) -> int:
        """Copy the store, add the journal's records, rename the copy over the store, delete the journal
        (the caller holds the lock). Returns the number of records merged."""
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
        record = {"key": key, **{name: kind(group.attrs[name]) for name, (kind, _) in RECORD_ATTRS.items()}}
        for name in RECORD_DATASETS:
            value = group[name][()] if name in group and (matrices or name not in LARGE_KEYS) else None
            record[name] = float(value) if value is not None and np.ndim(value) == 0 else value
        return record

    def read(self, key: str, matrices: bool = True) -> dict:
        """One record as written; every field of :data:`~deepks_es.keys.RECORD_ATTRS` and
        :data:`~deepks_es.keys.RECORD_DATASETS` is present, None where it was not stored (and for the
        matrices when ``matrices`` is False). Scalars are Python float/int/bool/str, the rest numpy arrays.

        Raises:
            KeyError: no complete record ``key``.
        """
        found = self._scan(lambda k, group: self._read_group(k, group, matrices), [key])
        if key not in found:
            raise KeyError(f"no complete record {key} in {self.path}")
        return found[key]

    def records(self, include_unconverged=False, include_failed=False, matrices: bool = True) -> list:
        """The complete records (as :meth:`read`), sorted by (source, name).

        A record is failed when :func:`is_failed`; it is unconverged when not failed and not ``converged``.
        Both kinds are left out unless asked for. ``matrices=False`` skips reading dm/fock/ovlp/mo_coeff
        (None), which can be large.
        """
        out = []
        for record in self._scan(lambda key, group: self._read_group(key, group, matrices)).values():
            if include_failed if is_failed(record) else (record["converged"] or include_unconverged):
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
    with store.lock():
        stored = set(store.keys())
        for i, frame in enumerate(frames):
            key = frame_key(frame.numbers, frame.positions_ang, frame.charge, frame.multiplicity, method, basis, [])
            if key in stored:
                continue
            store.write(
                {
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
                },
                overwrite=True,
            )
    return store
