"""``deepks-es scf`` as a user runs it: outputs, units, and one-line errors for bad input."""

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import torch
from conftest import WATER, random_model
from pyscf.data.nist import BOHR, HARTREE2EV

from deepks_es import save_model
from deepks_es.cli import main
from deepks_es.keys import SCF_OUTPUT


@pytest.fixture(scope="module")
def trained_like_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random.pt"
    save_model(random_model(), path, basis="cc-pVDZ", xc="PBE", trained=True, description="random test model")
    return path


def test_scf_json_and_extxyz(tmp_path, trained_like_model, capsys):
    out_json, out_xyz = tmp_path / "r.json", tmp_path / "r.extxyz"
    inputs = [str(WATER / "H2O.xyz"), str(WATER / "2Cs.xyz")]
    assert main(["scf", *inputs, "--model", str(trained_like_model), "--forces", "--output", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "e_delta" in printed and "gap" in printed and "forces (eV/Å)" in printed
    records = json.loads(out_json.read_text())
    assert [r["name"] for r in records] == ["H2O", "2Cs"]
    rec = records[1]
    assert set(rec) == set(SCF_OUTPUT)  # every key documented once, with its unit (deepks_es/keys.py)
    assert rec["converged"] and abs(rec["e_delta"]) > 1e-3
    assert np.isclose(rec["gap_ev"], rec["lumo_ev"] - rec["homo_ev"])
    homo_index = int(np.sum(np.array(rec["mo_occ"]) > 0)) - 1
    assert np.isclose(rec["mo_energy_ev"][homo_index], rec["homo_ev"])

    # the same run through the library: forces = -gradient in eV/Å, orbital energies in eV
    from deepks_es import load_model
    from deepks_es.calc import build_scf
    from deepks_es.structures import frame_to_mol, read_frames

    mf = build_scf(frame_to_mol(read_frames([WATER / "2Cs.xyz"])[0]), model=load_model(trained_like_model))
    e_tot = mf.kernel()
    de = mf.nuc_grad_method().kernel()
    assert abs(rec["e_tot"] - e_tot) < 1e-8
    np.testing.assert_allclose(rec["forces_ev_ang"], -de * HARTREE2EV / BOHR, atol=1e-5)
    np.testing.assert_allclose(rec["mo_energy_ev"], mf.mo_energy * HARTREE2EV, atol=1e-5)

    assert main(["scf", inputs[1], "--model", str(trained_like_model), "--forces", "--output", str(out_xyz)]) == 0
    atoms = ase.io.read(out_xyz, index=0)
    assert np.isclose(atoms.info["REF_energy"], e_tot * HARTREE2EV, atol=1e-6)
    np.testing.assert_allclose(atoms.arrays["REF_forces"], rec["forces_ev_ang"], atol=1e-6)
    assert np.isclose(atoms.info["gap_ev"], rec["gap_ev"])


def test_plain_base_functional_and_density_fit(capsys):
    assert main(["scf", str(WATER / "H2O.xyz"), "--model", "none", "--density-fit"]) == 0
    assert "no correction" in capsys.readouterr().out


def test_default_model_run_states_whether_it_is_trained(capsys):
    from deepks_es import load_model

    assert main(["scf", str(WATER / "H2O.xyz")]) == 0
    out = capsys.readouterr().out
    assert ("UNTRAINED" in out) == (not load_model().settings["trained"])
    assert load_model().settings["sha256"][:16] in out


def _write(path, text):
    path.write_text(text)
    return str(path)


BAD_INPUTS = {
    "missing file": (lambda d, m: [str(d / "absent.xyz")], "not found"),
    "malformed file": (
        lambda d, m: [_write(d / "bad.xyz", "3\ncomment\nO 0 0\nH x y z\n")],
        "cannot read structure file",
    ),
    "element the model lacks": (
        lambda d, m: [
            _write(
                d / "nh3.xyz",
                "4\ncharge=0 multiplicity=1\nN 0 0 0\nH 0 0.94 0.38\nH 0.81 -0.47 0.38\nH -0.81 -0.47 0.38\n",
            ),
            "--model",
            str(m),
        ],
        "no parameters for element(s) N",
    ),
    "odd electrons, spin 0": (
        lambda d, m: [_write(d / "oh.xyz", "2\ncharge=0 multiplicity=1\nO 0 0 0\nH 0 0 0.97\n")],
        "9 electrons cannot have multiplicity 1",
    ),
    "atoms too close": (
        lambda d, m: [_write(d / "close.xyz", "3\ncharge=0 multiplicity=1\nO 0 0 0\nH 0 0 0.3\nH 0 0.9 0\n")],
        "0.300 Å apart",
    ),
    "model for another basis": (
        lambda d, m: [str(WATER / "H2O.xyz"), "--basis", "6-31G", "--model", str(m)],
        "trained in basis cc-pVDZ",
    ),
    "missing model": (lambda d, m: [str(WATER / "H2O.xyz"), "--model", str(d / "none.pt")], "neither a file nor"),
    "tampered model": (lambda d, m: [str(WATER / "H2O.xyz"), "--model", _tamper(m, d)], "SHA-256"),
    "unknown output suffix": (lambda d, m: [str(WATER / "H2O.xyz"), "--output", str(d / "r.csv")], "unknown suffix"),
    "periodic frame": (
        lambda d, m: [
            _write(
                d / "pbc.extxyz",
                '3\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3 '
                'pbc="T T T"\nO 0 0 0\nH 0 0 0.97\nH 0 0.9 0\n',
            )
        ],
        "periodic",
    ),
}


def _tamper(model_path, d):
    payload = torch.load(model_path, weights_only=True)
    payload["state_dict"]["linear"] *= 2
    torch.save(payload, d / "tampered.pt")
    return str(d / "tampered.pt")


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_error(case, tmp_path, trained_like_model, capsys):
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path, trained_like_model)
    assert main(["scf", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepks-es: error:") and expected in err
    assert "\n" not in err and "Traceback" not in err


def test_console_script_exit_code_without_traceback(tmp_path):
    bad = _write(tmp_path / "oh.xyz", "2\ncharge=0 multiplicity=1\nO 0 0 0\nH 0 0 0.97\n")
    proc = subprocess.run([sys.executable, "-m", "deepks_es", "scf", bad], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "multiplicity" in proc.stderr


def test_not_converged_is_reported(tmp_path, trained_like_model, capsys):
    out = tmp_path / "r.json"
    code = main(
        ["scf", str(WATER / "2Cs.xyz"), "--model", str(trained_like_model), "--max-cycle", "1", "--output", str(out)]
    )
    rec = json.loads(out.read_text())
    assert code == 1 and rec["converged"] is False
    assert "did not converge" in capsys.readouterr().err
    assert rec["e_tot"] < -150  # the last energy is reported
