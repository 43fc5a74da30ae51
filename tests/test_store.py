"""The HDF5 label store: metadata identity, round trips, crash leftovers, filtering, keys (synthetic records)."""

import multiprocessing
import os
import shutil
import signal
import time

import h5py
import numpy as np
import pytest
from conftest import WATER

from deepks_es.errors import DeePKSInputError
from deepks_es.store import LabelStore, frame_key
from deepks_es.structures import read_frames

METADATA = {
    "method": "deepks",
    "basis": "cc-pVDZ",
    "xc": "PBE",
    "model_sha256": ["ab12", "cd34"],
    "grid_level": 3,
    "density_fit": True,
    "deepks_es_version": "0.1",
}


def synthetic_record(
    frame, seed: int = 0, converged: bool = True, error: str = "", forces: bool = True, optional: bool = False
) -> dict:
    """A made-up record (atomic units) for a real geometry, displaced by ~0.01 Å so every seed differs."""
    rng = np.random.default_rng(seed)
    natm, nao = len(frame.numbers), 5
    positions = frame.positions_ang + rng.normal(0, 0.01, (natm, 3))
    mo_energy = np.sort(rng.normal(0, 1, nao))
    record = {
        "key": frame_key(
            frame.numbers, positions, frame.charge, frame.multiplicity, "deepks", "cc-pVDZ", METADATA["model_sha256"]
        ),
        "name": f"{frame.name}:{seed}",
        "source": frame.source,
        "numbers": frame.numbers,
        "positions_ang": positions,
        "charge": frame.charge,
        "multiplicity": frame.multiplicity,
        "e_tot": np.nan if error else -76.4 * natm / 3 + 0.01 * rng.normal(),
        "forces": rng.normal(0, 0.02, (natm, 3)) if forces and not error else None,
        "mo_energy": None if error else mo_energy,
        "mo_occ": None if error else np.array([2.0, 2.0, 0.0, 0.0, 0.0]),
        "homo": None if error else mo_energy[1],
        "lumo": None if error else mo_energy[2],
        "gap": None if error else mo_energy[2] - mo_energy[1],
        "converged": converged and not error,
        "cycles": int(rng.integers(5, 50)),
        "wall_s": float(rng.uniform(1, 10)),
        "error": error,
    }
    if optional:
        record.update(
            e_tot_std=1e-4,
            force_std=rng.uniform(0, 1e-3, natm),
            max_devi_f=1e-3,
            e_hf=-76.0,
            e_corr=-0.2,
            e_t=-0.003,
            dm=rng.normal(size=(nao, nao)),
            fock=rng.normal(size=(nao, nao)),
            ovlp=np.eye(nao),
            mo_coeff=rng.normal(size=(nao, nao)),
            level_response=rng.normal(size=(2, nao, nao)),
        )
    return record


@pytest.fixture(scope="module")
def dimer_frame():
    return read_frames([WATER / "2Cs.xyz"])[0]


def test_create_and_reopen(tmp_path):
    path = tmp_path / "labels.h5"
    store = LabelStore(path, METADATA)
    assert store.metadata == METADATA and len(store) == 0 and store.keys() == []
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "deepks-es-labels" and f.attrs["format_version"] == 1
    assert LabelStore(path, dict(METADATA, deepks_es_version="0.2")).metadata == METADATA  # not an identity field
    assert LabelStore(path).metadata == METADATA


@pytest.mark.parametrize("field, value", [("basis", "def2-SVP"), ("model_sha256", ["ab12"]), ("density_fit", False)])
def test_identity_mismatch_refused(tmp_path, field, value):
    path = tmp_path / "labels.h5"
    LabelStore(path, METADATA)
    with pytest.raises(DeePKSInputError) as exc:
        LabelStore(path, dict(METADATA, **{field: value}))
    msg = str(exc.value)
    assert field in msg and repr(METADATA[field]) in msg and repr(value) in msg and "another --store path" in msg


def test_open_missing_or_foreign_file(tmp_path):
    with pytest.raises(DeePKSInputError, match="not found"):
        LabelStore(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DeePKSInputError, match="not an HDF5 file"):
        LabelStore(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DeePKSInputError, match="not a deepks-es label store"):
        LabelStore(tmp_path / "other.h5", METADATA)


def test_round_trip(tmp_path, dimer_frame):
    store = LabelStore(tmp_path / "labels.h5", METADATA)
    full = synthetic_record(dimer_frame, seed=1, optional=True)
    failed = synthetic_record(dimer_frame, seed=2, error="SCF crashed")
    with store.lock():  # as a batch writes: records stay in the journal until the lock is let go
        store.write(full)
        store.write(failed)
        assert store.journal.is_dir()
    assert len(store) == 2 and full["key"] in store and sorted(store.keys()) == store.keys()

    back = LabelStore(tmp_path / "labels.h5").read(full["key"])
    assert set(back) == set(full)
    for name, value in full.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    assert type(back["converged"]) is bool and type(back["charge"]) is int and type(back["e_tot"]) is float
    assert back["numbers"].dtype == np.int64

    back = store.read(failed["key"])
    assert np.isnan(back["e_tot"]) and back["error"] == "SCF crashed" and not back["converged"]
    for name in ("forces", "mo_energy", "mo_occ", "homo", "gap", "e_tot_std", "force_std", "dm", "mo_coeff"):
        assert back[name] is None, name
    assert store.read(full["key"], matrices=False)["dm"] is None
    with pytest.raises(KeyError):
        store.read("0" * 40)

    assert not store.journal.exists()  # merged when the lock was let go
    assert store.keys() == sorted([full["key"], failed["key"]])
    with h5py.File(tmp_path / "labels.h5", "r") as f:
        group = f["frames"][full["key"]]
        assert group["forces"].attrs["units"] == "Eh/bohr" and group["e_tot"].attrs["units"] == "Eh"
        assert group["positions_ang"].attrs["units"] == "angstrom"


def test_incomplete_group_ignored_and_rewritten(tmp_path, dimer_frame):
    path = tmp_path / "labels.h5"
    store = LabelStore(path, METADATA)
    record = synthetic_record(dimer_frame)
    with h5py.File(path, "a") as f:  # what a kill in the middle of write leaves
        f["frames"].create_group(record["key"]).create_dataset("numbers", data=record["numbers"])
    assert record["key"] not in store and len(store) == 0 and store.records(True, True) == []
    with pytest.raises(KeyError):
        store.read(record["key"])
    store.write(record)
    assert record["key"] in store and store.read(record["key"])["e_tot"] == record["e_tot"]


def test_duplicate_refused_and_overwrite(tmp_path, dimer_frame):
    store = LabelStore(tmp_path / "labels.h5", METADATA)
    failed = synthetic_record(dimer_frame, error="no convergence")
    store.write(failed)
    with pytest.raises(ValueError, match="overwrite=True"):
        store.write(failed)
    retried = dict(synthetic_record(dimer_frame), key=failed["key"])
    store.write(retried, overwrite=True)
    assert len(store) == 1 and store.read(failed["key"])["error"] == ""
    with pytest.raises(ValueError, match="lacks"):
        store.write({"key": "x"})


def test_records_filtering(tmp_path, dimer_frame):
    store = LabelStore(tmp_path / "labels.h5", METADATA)
    good = [synthetic_record(dimer_frame, seed=s) for s in (3, 1)]
    unconverged = synthetic_record(dimer_frame, seed=2, converged=False)
    failed = synthetic_record(dimer_frame, seed=4, error="basis error")
    for record in (*good, unconverged, failed):
        store.write(record)

    def names(**kwargs):
        return [record["name"] for record in store.records(**kwargs)]

    assert names() == ["2Cs:1", "2Cs:3"]
    assert names(include_unconverged=True) == ["2Cs:1", "2Cs:2", "2Cs:3"]
    assert names(include_failed=True) == ["2Cs:1", "2Cs:3", "2Cs:4"]
    assert names(include_unconverged=True, include_failed=True) == ["2Cs:1", "2Cs:2", "2Cs:3", "2Cs:4"]


def test_frame_key(dimer_frame):
    args = (dimer_frame.numbers, dimer_frame.positions_ang, 0, 1, "deepks", "cc-pVDZ", ["ab12"])
    key = frame_key(*args)
    assert len(key) == 40 and int(key, 16) >= 0
    assert frame_key(*args) == key
    assert frame_key(list(dimer_frame.numbers), dimer_frame.positions_ang.tolist(), *args[2:]) == key
    moved = dimer_frame.positions_ang.copy()
    moved[0, 0] = np.nextafter(moved[0, 0], 0)  # one ulp
    variants = [
        (args[0], moved, *args[2:]),
        (*args[:2], 1, 2, *args[4:]),
        (*args[:4], "pbe", *args[5:]),
        (*args[:5], "def2-SVP", args[6]),
        (*args[:6], ["ef56"]),
        (*args[:6], None),
    ]
    keys = {frame_key(*variant) for variant in variants}
    assert key not in keys and len(keys) == len(variants)


def test_journal_survives_kills_at_any_step(tmp_path, dimer_frame):
    """Records live in the journal until a merge; a write or a merge cut short by a kill loses nothing
    finished and duplicates nothing."""
    path = tmp_path / "labels.h5"
    store = LabelStore(path, METADATA)
    first, second = (synthetic_record(dimer_frame, seed=s) for s in (1, 2))
    store.write(first)  # outside a batch's lock: written and merged at once
    assert not store.journal.exists()
    with store.lock():
        store.write(second)
        # a kill inside a write leaves only a temporary file; one inside a merge, a partial copy
        (store.journal / ("f" * 40 + ".h5.tmp")).write_bytes(b"partial")
        (tmp_path / "labels.h5.merge.tmp").write_bytes(b"partial copy")
        reader = LabelStore(path)
        assert reader.keys() == sorted([first["key"], second["key"]])  # store + journal, tmp ignored
    # a kill after the merge's rename but before the journal was deleted: the next merge must not duplicate
    journal_copy = tmp_path / "journal_copy.h5"
    with store.lock():
        store.write(second, overwrite=True)
        shutil.copyfile(store.journal / f"{second['key']}.h5", journal_copy)
    store.journal.mkdir()
    shutil.copyfile(journal_copy, store.journal / f"{second['key']}.h5")
    resumed = LabelStore(path, METADATA)  # a writer reopening merges what a killed run left
    assert not resumed.journal.exists()
    assert resumed.keys() == sorted([first["key"], second["key"]])
    with h5py.File(path, "r") as f:
        assert len(f["frames"]) == 2


def _writer(path, frame, seeds, hold_s, started, metadata=METADATA):
    """A batch in another process: take the lock, write records one by one, set ``started``, hold the lock
    ``hold_s`` more."""
    store = LabelStore(path, metadata)
    with store.lock():
        for seed in seeds:
            store.write(synthetic_record(frame, seed=seed))
        started.set()
        time.sleep(hold_s)


def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path, dimer_frame):
    """Two batches on one store (the data-loss case of issue #11: records deleted, store truncated): the
    second is refused before it writes anything, with the holder's pid; every record of the first is
    stored exactly once; readers see the records meanwhile; the lock goes when its holder dies."""
    path = tmp_path / "labels.h5"
    LabelStore(path, METADATA)
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    first = ctx.Process(target=_writer, args=(path, dimer_frame, range(8), 3.0, started))
    first.start()
    assert started.wait(60)
    with pytest.raises(DeePKSInputError, match=f"being written by pid {first.pid} on .*wait for that run"):
        LabelStore(path, METADATA)
    second = LabelStore(path)  # a reader needs no lock
    with pytest.raises(DeePKSInputError, match=f"pid {first.pid}"):
        second.write(synthetic_record(dimer_frame, seed=100))
    first.join(60)
    assert first.exitcode == 0
    expected = sorted(synthetic_record(dimer_frame, seed=s)["key"] for s in range(8))
    assert LabelStore(path).keys() == expected
    with h5py.File(path, "r") as f:
        assert sorted(f["frames"]) == expected  # merged, each once
    assert not LabelStore(path).journal.exists() and not (tmp_path / "labels.h5.merge.tmp").exists()

    # a killed holder releases the lock (the OS drops it with the process); its journal is merged next time
    started = ctx.Event()
    killed = ctx.Process(target=_writer, args=(path, dimer_frame, range(8, 11), 60.0, started))
    killed.start()
    assert started.wait(60)
    deadline = time.time() + 60
    while len(LabelStore(path)) < 11 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.join()
    store = LabelStore(path, METADATA)  # not refused; merges what the killed run wrote
    assert len(store) == 11 and not store.journal.exists()


def test_concurrent_merges_are_serialised(tmp_path, dimer_frame):
    """Writers in several processes, each taking the lock per record (the Python API without a batch):
    they wait for no one, so some are refused; every record that was accepted is stored exactly once."""
    path = tmp_path / "labels.h5"
    LabelStore(path, METADATA)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        outcomes = pool.starmap(_write_one, [(path, dimer_frame, seed) for seed in range(16)])
    refused = [msg for msg in outcomes if msg]
    assert all("being written by pid" in msg for msg in refused), refused
    accepted = sorted(synthetic_record(dimer_frame, seed=s)["key"] for s, msg in zip(range(16), outcomes) if not msg)
    assert accepted and LabelStore(path).keys() == accepted
    with h5py.File(path, "r") as f:
        assert sorted(f["frames"]) == accepted


def _write_one(path, frame, seed) -> str:
    """'' when written, else the error message."""
    try:
        LabelStore(path).write(synthetic_record(frame, seed=seed))
        return ""
    except DeePKSInputError as exc:
        return str(exc)


def test_truncated_store_is_named(tmp_path, dimer_frame):
    path = tmp_path / "labels.h5"
    store = LabelStore(path, METADATA)
    store.write(synthetic_record(dimer_frame, seed=1))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DeePKSInputError, match="is truncated or damaged"):
        LabelStore(path)


def test_stored_outputs_per_record(tmp_path, dimer_frame):
    store = LabelStore(tmp_path / "labels.h5", METADATA)
    plain, full = synthetic_record(dimer_frame, seed=1, forces=False), synthetic_record(dimer_frame, 2, optional=True)
    failed = synthetic_record(dimer_frame, seed=3, error="x")
    with store.lock():
        for record in (plain, full, failed):
            store.write(record)
    contents = store.contents()
    assert contents[plain["key"]] == (False, contents[plain["key"]][1]) and "forces" not in contents[plain["key"]][1]
    assert {"forces", "dm", "mo_coeff"} <= contents[full["key"]][1] and contents[failed["key"]][0]
