"""``deepks-es select``: committee deviation, trust levels, ranking and near-duplicate removal."""

import ase.io
import numpy as np
import pytest
from conftest import WATER, random_model
from test_label import DATA
from test_store import synthetic_record

from deepks_es import save_model
from deepks_es.cli import main
from deepks_es.errors import DeePKSInputError
from deepks_es.output import EV_PER_ANG_PER_AU
from deepks_es.select import select_frames
from deepks_es.structures import read_frames


def _records(devi_ev_ang, frame):
    """Synthetic records of distinct geometries (atoms moved by ~0.2 Å) with the given deviations."""
    out = []
    for seed, d in enumerate(devi_ev_ang):
        rec = synthetic_record(frame, seed=seed, error="crashed" if d is None else "")
        rec["positions_ang"] = rec["positions_ang"] + np.random.default_rng(seed).normal(
            0, 0.2, (len(frame.numbers), 3)
        )
        rec["max_devi_f"] = None if d is None else d / EV_PER_ANG_PER_AU
        out.append(rec)
    return out


def test_trust_levels_ranking_and_near_duplicates():
    dimer = read_frames([WATER / "2Cs.xyz"])[0]
    records = _records([0.01, 0.30, 0.12, 0.25, 2.0, None, 0.2], dimer)
    twin = dict(records[1], key="twin", name="twin", max_devi_f=0.29 / EV_PER_ANG_PER_AU)
    twin["positions_ang"] = records[1]["positions_ang"] + 1e-4  # a near-duplicate of the 0.30 frame
    result = select_frames([*records, twin], trust_lo=0.05, trust_hi=1.0, max_frames=3)
    assert [r["name"] for r in result.selected] == ["2Cs:1", "2Cs:3", "2Cs:6"]  # 0.30, 0.25, 0.20: largest first
    assert (result.accurate, result.candidate, result.failed, result.duplicates) == (1, 5, 2, 1)
    assert select_frames(records, 0.05, 1.0, 3, duplicate_ang=0.0).selected[0]["name"] == "2Cs:1"
    with pytest.raises(DeePKSInputError, match="--trust-lo < --trust-hi"):
        select_frames(records, 0.5, 0.1, 3)
    no_committee = dict(records[0], max_devi_f=None)
    with pytest.raises(DeePKSInputError, match="no committee force deviation"):
        select_frames([no_committee], 0.05, 1.0, 3)


def test_select_command_end_to_end(tmp_path, capsys):
    """Committee labels (resumable store) -> ranked, deduplicated frames written as extxyz."""
    models = []
    for seed in range(2):
        path = tmp_path / f"m{seed}.pt"
        save_model(random_model(seed=seed, scale=0.02), path, basis="sto-3g", xc="PBE", trained=True)
        models.append(str(path))
    images = ase.io.read(DATA, index="6:12")  # six dimers
    near = images[0].copy()
    near.positions += 1e-3
    candidates = tmp_path / "md.extxyz"
    ase.io.write(candidates, [*images, near], format="extxyz")
    out = tmp_path / "next.extxyz"
    argv = ["select", str(candidates), "--model", *models, "--basis", "sto-3g", "--output", str(out)]
    argv += ["--duplicate-ang", "0.005", "--no-progress"]  # these MD frames differ by 0.007-0.025 Å
    assert main([*argv, "--trust-lo", "0", "--trust-hi", "100"]) == 0
    chosen = ase.io.read(out, index=":")
    devi = [a.info["max_devi_f_ev_ang"] for a in chosen]
    assert len(chosen) == 6 and devi == sorted(devi, reverse=True) and min(devi) > 0  # the twin removed
    assert "near-duplicates removed 1" in capsys.readouterr().out
    # the store is reused: tighter trust levels and --max select from it without new SCFs
    lo = float(np.median(devi))
    assert main([*argv, "--trust-lo", str(lo), "--trust-hi", "100", "--max", "2"]) == 0
    again = ase.io.read(out, index=":")
    assert len(again) == 2 and all(a.info["max_devi_f_ev_ang"] >= lo for a in again)
    assert "skipped (already stored) 7" in capsys.readouterr().out
    assert main([*argv, "--trust-lo", "0", "--trust-hi", "1", "--model", models[0]]) == 2
    assert "two or more models" in capsys.readouterr().err
