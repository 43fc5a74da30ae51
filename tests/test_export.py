"""Exports of a synthetic label store: extxyz read back with ASE, deepmd and deepmd-mixed read back with dpdata."""

import ase.io
import dpdata
import numpy as np
import pytest
from conftest import WATER
from pyscf.data.nist import BOHR, HARTREE2EV
from test_store import METADATA, synthetic_record

from deepks_es.errors import DeePKSInputError
from deepks_es.export import export
from deepks_es.store import LabelStore
from deepks_es.structures import read_frames

EV_PER_ANG = HARTREE2EV / BOHR


@pytest.fixture()
def store(tmp_path):
    """Dimers (seeds 0-2), monomers (3-4), one unconverged dimer (5), one failed monomer (6)."""
    dimer, monomer = read_frames([WATER / "2Cs.xyz", WATER / "H2O.xyz"])
    store = LabelStore(tmp_path / "labels.h5", METADATA)
    for seed in range(7):
        frame = dimer if seed in (0, 1, 2, 5) else monomer
        store.write(synthetic_record(frame, seed, converged=seed != 5, error="crashed" if seed == 6 else ""))
    return store


def by_energy_ev(store, include_unconverged=False):
    """The expected frames keyed by their energy in eV (distinct by construction)."""
    records = store.records(include_unconverged=include_unconverged)
    return {round(rec["e_tot"] * HARTREE2EV, 6): rec for rec in records}


def test_extxyz(store, tmp_path):
    out = tmp_path / "train.extxyz"
    assert export(store.path, "extxyz", out) == 5
    images = ase.io.read(out, index=":")
    records = store.records()
    assert len(images) == len(records)
    for atoms, rec in zip(images, records):
        assert atoms.info["name"] == rec["name"]
        assert atoms.info["REF_energy"] == pytest.approx(rec["e_tot"] * HARTREE2EV, abs=1e-7)
        np.testing.assert_allclose(atoms.arrays["REF_forces"], rec["forces"] * EV_PER_ANG, atol=1e-7)
        np.testing.assert_allclose(atoms.positions, rec["positions_ang"], atol=1e-7)
        np.testing.assert_array_equal(atoms.numbers, rec["numbers"])
        assert atoms.info["charge"] == 0 and atoms.info["multiplicity"] == 1 and atoms.info["converged"] is True
        assert atoms.info["config_type"] == ("2Cs" if len(atoms) == 6 else "H2O")
        assert not atoms.pbc.any()

    assert export(store.path, "extxyz", out, include_unconverged=True) == 6
    flagged = [atoms.info["name"] for atoms in ase.io.read(out, index=":") if not atoms.info["converged"]]
    assert flagged == ["2Cs:5"]


def test_extxyz_without_forces(tmp_path):
    (monomer,) = read_frames([WATER / "H2O.xyz"])
    store = LabelStore(tmp_path / "labels.h5", METADATA)
    store.write(synthetic_record(monomer, forces=False))
    assert export(store.path, "extxyz", tmp_path / "e.extxyz") == 1
    (atoms,) = ase.io.read(tmp_path / "e.extxyz", index=":")
    assert "REF_forces" not in atoms.arrays and "REF_energy" in atoms.info
    with pytest.raises(DeePKSInputError, match="--forces"):
        export(store.path, "deepmd", tmp_path / "dp")


@pytest.mark.parametrize("fmt, dpdata_fmt", [("deepmd", "deepmd/npy"), ("deepmd-mixed", "deepmd/npy/mixed")])
@pytest.mark.parametrize("include_unconverged", [False, True])
def test_deepmd(store, tmp_path, fmt, dpdata_fmt, include_unconverged):
    out = tmp_path / fmt
    expected = by_energy_ev(store, include_unconverged)
    assert export(store.path, fmt, out, include_unconverged=include_unconverged) == len(expected)
    systems = dpdata.MultiSystems.from_file(str(out), fmt=dpdata_fmt)
    assert systems.get_nframes() == len(expected)
    folders = sorted(p.parent.name for p in out.glob("*/type.raw"))
    assert folders == (["H2O1", "H4O2"] if fmt == "deepmd" else ["3", "6"])
    for folder in out.iterdir():
        assert (folder / "nopbc").is_file() and (folder / "type_map.raw").read_text().split() == ["H", "O"]
    seen = set()
    for system in systems:
        for k in range(len(system)):
            energy = system["energies"][k]
            rec = expected[round(energy, 6)]
            seen.add(rec["name"])
            assert energy == pytest.approx(rec["e_tot"] * HARTREE2EV, abs=1e-9)
            # exported atoms are in type-map order (H before O), stable within each element
            order = np.argsort(rec["numbers"], kind="stable")
            symbols = np.array(system["atom_names"])[system["atom_types"]]
            assert list(symbols) == ["H" if z == 1 else "O" for z in rec["numbers"][order]]
            np.testing.assert_allclose(system["coords"][k], rec["positions_ang"][order], atol=1e-12)
            np.testing.assert_allclose(system["forces"][k], rec["forces"][order] * EV_PER_ANG, atol=1e-12)
    assert seen == {rec["name"] for rec in expected.values()}
    assert ("2Cs:5" in seen) == include_unconverged


def test_single_system_read_back(store, tmp_path):
    export(store.path, "deepmd", tmp_path / "dp")
    system = dpdata.LabeledSystem(str(tmp_path / "dp" / "H4O2"), fmt="deepmd/npy")
    assert len(system) == 3 and system.nopbc
    expected = sorted(rec["e_tot"] * HARTREE2EV for rec in store.records() if len(rec["numbers"]) == 6)
    np.testing.assert_allclose(sorted(system["energies"]), expected, atol=1e-9)


def test_bad_requests(store, tmp_path):
    with pytest.raises(DeePKSInputError, match="extxyz, deepmd, deepmd-mixed"):
        export(store.path, "xyz", tmp_path / "x")
    with pytest.raises(DeePKSInputError, match="not found"):
        export(tmp_path / "absent.h5", "extxyz", tmp_path / "x.extxyz")
    empty = LabelStore(tmp_path / "empty.h5", METADATA)
    with pytest.raises(DeePKSInputError, match="no converged frame"):
        export(empty.path, "extxyz", tmp_path / "x.extxyz")


def test_committee_deviations_are_exported(tmp_path):
    """Committee records carry their deviations (eV/Å, eV) into extxyz info and deepmd's committee_devi.csv,
    each row naming the folder and index where dpdata wrote the frame."""
    import csv

    dimer, monomer = read_frames([WATER / "2Cs.xyz", WATER / "H2O.xyz"])
    store = LabelStore(tmp_path / "labels.h5", METADATA)
    records = [synthetic_record(f, seed, optional=True) for seed, f in enumerate((dimer, monomer, dimer))]
    for seed, rec in enumerate(records):
        rec["max_devi_f"] = 1e-3 * (seed + 1)
        store.write(rec)
    export(store.path, "extxyz", tmp_path / "c.extxyz")
    for atoms in ase.io.read(tmp_path / "c.extxyz", index=":"):
        rec = next(r for r in records if r["name"] == atoms.info["name"])
        assert atoms.info["max_devi_f_ev_ang"] == pytest.approx(rec["max_devi_f"] * EV_PER_ANG, rel=1e-9)
        assert atoms.info["e_tot_std_ev"] == pytest.approx(rec["e_tot_std"] * HARTREE2EV, rel=1e-9)
    export(store.path, "deepmd", tmp_path / "dp")
    rows = list(csv.DictReader(open(tmp_path / "dp" / "committee_devi.csv")))
    assert len(rows) == 3
    for row in rows:
        rec = next(r for r in records if r["name"] == row["name"])
        system = dpdata.LabeledSystem(str(tmp_path / "dp" / row["folder"]), fmt="deepmd/npy")
        assert system["energies"][int(row["index"])] == pytest.approx(rec["e_tot"] * HARTREE2EV, abs=1e-9)
        assert float(row["max_devi_f_ev_ang"]) == pytest.approx(rec["max_devi_f"] * EV_PER_ANG, rel=1e-5)
