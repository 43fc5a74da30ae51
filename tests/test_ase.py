"""The ASE calculator and the ``opt`` / ``md`` commands: ASE's conventions (units, force sign, caching),
density reuse, input errors before any SCF, resumable trajectories.

Water monomer and dimer (data/water) in STO-3G with a random non-zero model, grid level 1 (the grid
response keeps forces = -dE/dx at any grid level), conv_tol 1e-12 Eh.
"""

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.calculator import CalculationFailed
from conftest import WATER, random_model
from pyscf.data.nist import HARTREE2EV

import deepks_es.ase as deepks_ase
from deepks_es import DeePKSInputError, load_model, save_model
from deepks_es.ase import DeePKSCalculator, SCFNotConvergedError, project_density
from deepks_es.calc import build_scf
from deepks_es.cli import md as md_command
from deepks_es.cli import opt as opt_command
from deepks_es.keys import REF_ENERGY, REF_FORCES, TRAJECTORY_INFO, TRAJECTORY_MD_INFO, VELOCITIES_ANG_FS
from deepks_es.scf import run_scf
from deepks_es.settings import SCFSettings
from deepks_es.structures import frame_to_mol, read_frames

SETTINGS = SCFSettings(conv_tol=1e-12, grid_level=1)
SCF_FLAGS = ["--conv-tol", "1e-12", "--grid-level", "1"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random_sto3g.pt"
    save_model(random_model(), path, basis="sto-3g", xc="PBE", trained=True, description="random test model")
    return path


def water(name: str) -> ase.Atoms:
    return ase.io.read(WATER / f"{name}.xyz")


def calculator(model_path, **kwargs) -> DeePKSCalculator:
    return DeePKSCalculator(model=str(model_path), settings=SETTINGS, **kwargs)


def test_forces_are_minus_gradient(model_path):
    """Forces (eV/Å) against central differences of the energy (eV) through the calculator, h = 1e-3 Å."""
    atoms = water("2Cs")
    calc = calculator(model_path)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert abs(calc.stats["e_delta"]) > 1e-2  # the correction is really there
    h = 1e-3
    for a, x in ((0, 0), (2, 1), (4, 2)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[a, x] += sign * h
            moved.calc = calc
            energies.append(moved.get_potential_energy())
        assert abs(-(energies[0] - energies[1]) / (2 * h) - forces[a, x]) < 1e-4


def test_cache_units_and_pyscf_energy(model_path):
    """Energy in eV = PySCF's e_tot x HARTREE2EV; cached while the atoms stay, recomputed when they move."""
    atoms = water("H2O")
    calc = calculator(model_path)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    mf = run_scf(
        build_scf(
            frame_to_mol(read_frames([WATER / "H2O.xyz"])[0], "sto-3g"), model=load_model(model_path), settings=SETTINGS
        )
    )
    assert abs(energy - mf.e_tot * HARTREE2EV) < 1e-7
    assert atoms.get_potential_energy(force_consistent=True) == energy  # free_energy

    first = calc.mf
    assert atoms.get_potential_energy() == energy and calc.mf is first  # cached: no new SCF
    atoms.get_forces()
    assert calc.mf is first  # forces at the same geometry: the gradient only
    atoms.positions[1, 0] += 0.02
    moved = atoms.get_potential_energy()
    assert calc.mf is not first and abs(moved - energy) > 1e-4
    assert calc.check_state(atoms) == []
    atoms.info["charge"] = 2  # a change of charge in atoms.info is a change of state too
    assert calc.check_state(atoms) == ["info"]


def test_density_reuse_same_energy_fewer_cycles(model_path):
    atoms = water("2Cs")
    warm = calculator(model_path)
    warm.get_potential_energy(atoms)
    atoms.positions += np.random.default_rng(0).normal(scale=0.01, size=atoms.positions.shape)
    cold = calculator(model_path, reuse_density=False)
    e_warm, e_cold = warm.get_potential_energy(atoms), cold.get_potential_energy(atoms)
    assert warm.stats["start"] == "projected" and cold.stats["start"] == "cold"
    assert abs(e_warm - e_cold) < 1e-7
    assert warm.stats["cycles"] < cold.stats["cycles"]


def test_projected_density_is_a_density(model_path):
    """dm0 of a moved molecule is idempotent in the new overlap and holds every electron."""
    atoms = water("H2O")
    calc = calculator(model_path)
    calc.get_potential_energy(atoms)
    moved = frame_to_mol(read_frames([WATER / "H2O.xyz"])[0], "sto-3g").set_geom_(
        atoms.positions + 0.05, unit="Angstrom", inplace=False
    )
    ovlp = moved.intor_symmetric("int1e_ovlp")
    dm = project_density(calc.mf.mo_coeff, calc.mf.mo_occ, ovlp)
    assert abs(np.trace(dm @ ovlp) - 10) < 1e-10
    np.testing.assert_allclose(dm @ ovlp @ dm, 2 * dm, atol=1e-10)


def test_bad_input_refused_before_any_scf(model_path, monkeypatch):
    def no_scf(*args, **kwargs):
        raise AssertionError("an SCF ran")

    monkeypatch.setattr(deepks_ase, "run_scf", no_scf)
    periodic = water("H2O")
    periodic.pbc, periodic.cell = True, [10, 10, 10]
    ammonia = ase.Atoms("NH3", positions=[[0, 0, 0], [0.94, 0, -0.33], [-0.47, 0.82, -0.33], [-0.47, -0.82, -0.33]])
    triplet = water("H2O")
    triplet.info["multiplicity"] = 3
    cases = [
        (lambda: calculator(model_path).get_potential_energy(periodic), "periodic"),
        (lambda: DeePKSCalculator(model="no-such-model"), "neither a file nor a shipped model"),
        (lambda: calculator(model_path).get_forces(ammonia), "no parameters for element(s) N"),
        (lambda: calculator(model_path).get_potential_energy(triplet), "multiplicity 3"),
        (lambda: calculator(model_path, charge=0.5), "charge=0.5 is not an integer"),
        (lambda: calculator(model_path, basis="cc-pVDZ"), "trained in basis sto-3g"),
    ]
    for call, words in cases:
        with pytest.raises(DeePKSInputError) as err:
            call()
        assert words in str(err.value) and "\n" not in str(err.value)


def test_unconverged_scf_raises(model_path):
    atoms = water("H2O")
    atoms.calc = DeePKSCalculator(model=str(model_path), settings=SCFSettings(max_cycle=1))
    with pytest.raises(SCFNotConvergedError) as err:
        atoms.get_forces()
    assert isinstance(err.value, CalculationFailed)
    assert "did not converge" in str(err.value) and "last e_tot" in str(err.value) and "--max-cycle" in str(err.value)


def test_opt_converges_and_resumes(model_path, tmp_path, capsys):
    out = tmp_path / "opt.extxyz"
    args = [str(WATER / "2Cs.xyz"), "--model", str(model_path), "--fmax", "0.4", "--output", str(out), *SCF_FLAGS]
    assert opt_command.main([*args, "--steps", "1"]) == 1  # not converged within one step
    assert [a.info["step"] for a in ase.io.read(out, ":")] == [0, 1]
    assert opt_command.main([*args, "--steps", "30"]) == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and "converged at step" in printed
    frames = ase.io.read(out, ":")
    steps = [a.info["step"] for a in frames]
    assert steps == list(range(len(steps))) and len(steps) > 2  # step numbers continue, no duplicate
    last = frames[-1]
    assert set(TRAJECTORY_INFO) <= set(last.info) and REF_ENERGY in last.info
    assert np.linalg.norm(last.arrays[REF_FORCES], axis=1).max() < 0.4
    assert last.info[REF_ENERGY] < frames[0].info[REF_ENERGY]
    assert opt_command.main([*args, "--steps", "30"]) == 0  # already converged: nothing recomputed
    assert "already converged" in capsys.readouterr().out and len(ase.io.read(out, ":")) == len(frames)


def test_md_nve_langevin_resume_and_failure(model_path, tmp_path, capsys):
    inp = str(WATER / "H2O.xyz")
    nve, langevin = tmp_path / "nve.extxyz", tmp_path / "langevin.extxyz"
    common = ["--model", str(model_path), *SCF_FLAGS]
    assert md_command.main([inp, "--output", str(nve), "--steps", "2", "--initial-temperature", "300", *common]) == 0
    first = ase.io.read(nve, ":")
    assert [a.info["step"] for a in first] == [0, 1, 2]
    assert all(VELOCITIES_ANG_FS in a.arrays and set(TRAJECTORY_MD_INFO) <= set(a.info) for a in first)
    assert np.abs(first[0].arrays[VELOCITIES_ANG_FS]).max() > 1e-4  # 300 K, not at rest
    # a run killed while writing leaves a torn frame: the rerun cuts it off and continues from step 2
    with open(nve, "a") as fd:
        fd.write("3\nProperties=species:S:1:pos:R:3 step=3\nO 0.0 0.0")
    assert md_command.main([inp, "--output", str(nve), "--steps", "3", *common]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    frames = ase.io.read(nve, ":")
    assert [a.info["step"] for a in frames] == [0, 1, 2, 3] and frames[3].info["time_fs"] == 1.5
    # total energy over the steps (NVE): conserved to well below the kinetic energy
    total = [a.info[REF_ENERGY] + a.info["e_kin_ev"] for a in frames]
    assert np.ptp(total) < 0.1 * max(a.info["e_kin_ev"] for a in frames)

    assert md_command.main([inp, "--output", str(langevin), "--steps", "1", "--temperature", "300", *common]) == 0
    assert "Langevin" in capsys.readouterr().out
    assert all(VELOCITIES_ANG_FS in a.arrays for a in ase.io.read(langevin, ":"))

    # a step whose SCF fails: exit 1, one error line, every finished frame kept
    assert md_command.main([inp, "--output", str(nve), "--steps", "6", *common, "--max-cycle", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepks-es: error: SCF of H2O did not converge")
    assert [a.info["step"] for a in ase.io.read(nve, ":")] == [0, 1, 2, 3]


def test_commands_refuse_bad_input(model_path, tmp_path, capsys):
    inp = WATER / "H2O.xyz"
    periodic = tmp_path / "periodic.extxyz"
    atoms = water("H2O")
    atoms.pbc, atoms.cell = True, [10, 10, 10]
    ase.io.write(periodic, atoms)
    foreign = tmp_path / "foreign.extxyz"
    foreign.write_text("this is not a trajectory\n")
    model = ["--model", str(model_path)]
    cases = [
        (opt_command, [str(inp), "--output", str(tmp_path / "o.extxyz"), "--fmax", "-1", *model], "--fmax must be"),
        (opt_command, [str(inp), "--output", str(inp), *model], "is one of the input files"),
        (opt_command, [str(inp), "--output", str(tmp_path / "o.json"), *model], "ending in .extxyz"),
        (opt_command, [str(periodic), "--output", str(tmp_path / "o.extxyz"), *model], "periodic"),
        (md_command, [str(inp), "--output", str(tmp_path / "m.extxyz"), "--timestep", "0", *model], "--timestep"),
        (md_command, [str(inp), "--output", str(foreign), *model], "not an extxyz trajectory"),
        (md_command, [str(inp), "--output", str(tmp_path / "m.extxyz"), "--model", "nope"], "shipped model"),
    ]
    for command, argv, words in cases:
        assert command.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deepks-es: error:") and words in err[0], err
