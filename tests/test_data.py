"""The training-data pipeline of issue #12 (data/train/): the thermal and liquid-cut frames that ship, their
rebuild from the liquid frames, the split between training and held-out frames, and the label archives
(data/train/pack_labels.py) that carry hours of HSE06 labels in git. No SCF and no MD: CI time only.
"""

import importlib.util
import json
import re
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from conftest import WATER
from test_store import METADATA, synthetic_record

from deepks_es.dataset import geometry_key
from deepks_es.store import LabelStore
from deepks_es.structures import read_frames

TRAIN = Path(__file__).resolve().parent.parent / "data" / "train"
THERMAL = TRAIN / "thermal"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, TRAIN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def maker():
    return _script("make_thermal_clusters")


@pytest.fixture(scope="module")
def shipped():
    """split -> {file stem: frames} of data/train/thermal/{train,heldout}/*.xyz."""
    return {
        split: {p.stem: read_frames([p]) for p in sorted((THERMAL / split).glob("*.xyz"))}
        for split in ("train", "heldout")
    }


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_liquid_cuts_rebuild_bit_for_bit(maker, split):
    """The liquid cuts are rebuilt from the periodic DeePMD-kit frames shipped with them (fixed seed):
    every shipped cluster, to the 1e-6 Å of the written files; held-out cuts come from data_3 (DeePMD's
    validation system) only, training cuts from data_0..2 only."""
    by_size, recs = maker.liquid_cuts(THERMAL / "liquid_water_deepmd_kit_example", split)
    assert sorted(by_size) == maker.LIQUID[split]["sizes"] and len(recs) == maker.LIQUID[split]["count"]
    for n, made in by_size.items():
        shipped = ase.io.read(THERMAL / split / f"liquid_cut_n{n:02d}.xyz", index=":")
        assert [a.info["name"] for a in shipped] == [a.info["name"] for a in made]
        for atoms, again in zip(shipped, made):
            np.testing.assert_allclose(atoms.positions, again.positions, atol=1e-6)
            assert list(atoms.numbers) == [8, 1, 1] * n
    systems = {r["cut_from"].split("_set")[0] for r in recs}
    assert systems == ({"data_3"} if split == "heldout" else {"data_0", "data_1", "data_2"})


def test_shipped_frames_are_intact_water_clusters(maker, shipped):
    """Every frame: (H2O)n in O,H,H order as its name says, neutral singlet, no atoms closer than 0.5 Å, no
    broken monomer, each H nearest its own O; MD frames also one connected cluster (O-O ≤ 3.5 Å), as the
    maker's discard rules promise (liquid cuts may have a dangling surface molecule, as in the source)."""
    counts = {}
    for split, files in shipped.items():
        for stem, frames in files.items():
            n = int(re.search(r"_n(\d+)$", stem).group(1))
            counts[split, stem.startswith("liquid")] = counts.get((split, stem.startswith("liquid")), 0) + len(frames)
            for f in frames:
                assert list(f.numbers) == [8, 1, 1] * n and (f.charge, f.multiplicity) == (0, 1), f.name
                bad = maker.problems(f.positions_ang, n)
                if stem.startswith("liquid"):
                    bad = [b for b in bad if "OO>" not in b]
                assert not bad, (f.name, bad)
    manifest = json.loads((THERMAL / "manifest.json").read_text())
    for (split, liquid), count in counts.items():  # the manifest accounts for every frame
        kind = "liquid_cut" if liquid else "thermal"
        assert count == sum(r.get("frames", 1) for r in manifest if (r["split"], r["kind"]) == (split, kind))


def test_heldout_frames_are_never_training_frames(shipped):
    """No held-out geometry is a training geometry (keys of the exact coordinates), the held-out MD
    trajectories have seeds and start structures of their own, and no README example cluster
    (data/water, the documented held-out BEGDB and WATER27 clusters) is among the training frames."""
    keys = {s: {geometry_key(f) for fs in files.values() for f in fs} for s, files in shipped.items()}
    assert keys["train"] and keys["heldout"] and not keys["train"] & keys["heldout"]
    manifest = json.loads((THERMAL / "manifest.json").read_text())
    md = {s: [r for r in manifest if r["kind"] == "thermal" and r["split"] == s] for s in ("train", "heldout")}
    assert not {r["seed"] for r in md["train"]} & {r["seed"] for r in md["heldout"]}
    assert not {r["start"] for r in md["train"]} & {r["start"] for r in md["heldout"]}
    examples = {geometry_key(f) for f in read_frames(sorted(WATER.glob("*.xyz")))}
    assert not examples & keys["train"]


def test_label_archive_round_trip(tmp_path):
    """pack keeps what training reads (energies, forces, orbital energies, occupations, the occupied + 4
    virtual orbitals in float32) of every converged frame and the store's metadata; unpack writes a store
    with the same keys and values, and unpacking again into it adds nothing; missing names the inputs with a
    frame the store lacks."""
    pack_labels = _script("pack_labels")
    frame = read_frames([WATER / "2Cs.xyz"])[0]
    store = LabelStore(tmp_path / "s.h5", METADATA)
    with store.lock():
        for seed in range(3):
            store.write(synthetic_record(frame, seed=seed, optional=True))
        store.write(synthetic_record(frame, seed=9, error="SCF failed"))
    assert pack_labels.pack(tmp_path / "s.h5", tmp_path / "s.npz", virtual=1) == 3  # the failed frame is left out
    assert pack_labels.unpack(tmp_path / "s.npz", tmp_path / "u.h5") == 3
    out = LabelStore(tmp_path / "u.h5")
    assert out.metadata == store.metadata
    before = {r["key"]: r for r in store.records(matrices=True)}
    after = {r["key"]: r for r in out.records(matrices=True)}
    assert set(after) == set(before) and len(after) == 3
    for key, rec in after.items():
        ref = before[key]
        assert rec["e_tot"] == ref["e_tot"] and rec["name"] == ref["name"]
        for name in ("e_hf", "e_corr", "e_t"):
            assert rec[name] == ref[name]
        for name in ("positions_ang", "forces", "mo_energy", "mo_occ"):
            np.testing.assert_array_equal(rec[name], ref[name])
        assert rec["mo_coeff"].shape == (5, 3)  # 2 occupied + 1 virtual
        np.testing.assert_allclose(rec["mo_coeff"], ref["mo_coeff"][:, :3], rtol=1e-7)
        assert rec["dm"] is None and rec["fock"] is None
    assert pack_labels.unpack(tmp_path / "s.npz", tmp_path / "u.h5") == 3
    assert len(LabelStore(tmp_path / "u.h5").records()) == 3
    # missing: of two inputs, the one whose frame is stored (a recipe's rerun skips it) and 2Cs as it is (to label)
    ase.io.write(tmp_path / "done.xyz", ase.Atoms(numbers=frame.numbers, positions=frame.positions_ang + 0.1))
    done = read_frames([tmp_path / "done.xyz"])[0]
    with out.lock():
        out.write({**synthetic_record(done, seed=5), "positions_ang": done.positions_ang})
    assert pack_labels.missing(tmp_path / "u.h5", [tmp_path / "done.xyz", WATER / "2Cs.xyz"]) == [WATER / "2Cs.xyz"]


def test_committed_archives_name_their_level():
    """Each committed archive's metadata names the method, basis and the PySCF and Libxc versions that made
    it (HSE06 differs between codes at the mEh level), and holds the frame count README.md's table says. PBE
    archives are ``deepks-es eval`` base stores: computed as eval computes them (no density fitting)."""
    table = (TRAIN / "labels" / "README.md").read_text()
    archives = sorted((TRAIN / "labels").glob("*.npz"))
    assert archives
    for path in archives:
        data = np.load(path)
        meta = json.loads(str(data["metadata"]))
        assert meta["basis"] == "cc-pVDZ" and meta["method"] in ("hse06", "ccsd(t)", "pbe"), path.name
        assert meta["versions"]["pyscf"] and meta["versions"]["libxc"], path.name
        if meta["method"] == "hse06":
            assert meta["xc"] == "HSE06" and meta["density_fit"], path.name
        if meta["method"] == "pbe":
            assert meta["xc"] == "PBE" and not meta["density_fit"] and meta["grid_level"] == 3, path.name
        row = re.search(rf"\| `{re.escape(path.name)}` \| (\d+) \|", table)
        assert row and int(row.group(1)) == int(data["count"]), path.name
