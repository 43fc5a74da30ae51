"""Bad input and faults found by trying the commands as a new user would (issue #11): each case gives one line
``deepks-es: error: ...`` with exit status 2 before any compute, or the correct result.

The cases are the rows of the issue's table; none of them runs an SCF (the stores are synthetic).
"""

import multiprocessing
import time

import numpy as np
import pytest
import yaml
from conftest import WATER, random_model
from test_store import _writer, synthetic_record

from deepks_es import save_model
from deepks_es.cli import main
from deepks_es.projector import ProjectorBasis
from deepks_es.store import LabelStore
from deepks_es.structures import read_frames

H2O = str(WATER / "H2O.xyz")
PROJECTOR = ProjectorBasis().to_dict()
LEVEL = {"basis": "cc-pVDZ", "model_sha256": [], "grid_level": 3, "density_fit": False}


def _store(path, method, xc, seeds, frame, forces=True, basis="cc-pVDZ"):
    store = LabelStore(path, {**LEVEL, "method": method, "xc": xc, "basis": basis})
    with store.lock():
        for seed in seeds:
            store.write(synthetic_record(frame, seed=seed, forces=forces))
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Synthetic cc-pVDZ stores (hse06 target, pbe base of the same structures), a model."""
    d = tmp_path_factory.mktemp("hardening")
    dimer = read_frames([WATER / "2Cs.xyz"])[0]
    model = d / "model.pt"
    save_model(random_model(), model, basis="cc-pVDZ", xc="PBE", trained=True)
    other_level = {}
    for name, level in {"sto3g": dict(basis="sto-3g", xc="PBE"), "blyp": dict(basis="cc-pVDZ", xc="BLYP")}.items():
        other_level[name] = str(d / f"model_{name}.pt")
        save_model(random_model(), other_level[name], trained=True, **level)
    a_file = d / "a_file.txt"
    a_file.write_text("not a folder\n")
    truncated = d / "truncated.h5"
    data = open(_store(d / "full.h5", "pbe", "PBE", range(3), dimer), "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    return {
        "d": d,
        "target": _store(d / "hse06.h5", "hse06", "HSE06", range(3), dimer),
        "base": _store(d / "pbe.h5", "pbe", "PBE", range(3), dimer),
        "model": str(model),
        "file": str(a_file),
        "truncated": str(truncated),
        "ccsdt": _store(d / "ccsdt.h5", "ccsd(t)", "", range(3), dimer, forces=False),
        "base_sto3g": _store(d / "pbe_sto3g.h5", "pbe", "PBE", range(3), dimer, basis="sto-3g"),
        **{f"model_{k}": v for k, v in other_level.items()},
    }


def _xyz(env, name, comment, coords="O 0 0 0\nH 0 0.757 0.587\nH 0 -0.757 0.587"):
    path = env["d"] / f"{name}.xyz"
    path.write_text(f"3\n{comment}\n{coords}\n")
    return str(path)


def _config(env, name, **changes):
    cfg = {"target": env["target"], "base": env["base"], "workdir": str(env["d"] / f"run_{name}"), **changes}
    path = env["d"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


# name -> (argv from env, expected fragment of the one-line error)
CASES = {
    # wrong result: a config that disagrees with its stores, or is not a string
    "train basis other than the stores'": (
        lambda e: ["train", _config(e, "sto", basis="sto-3g")],
        "basis 'sto-3g' differs from the label stores' 'cc-pVDZ'",
    ),
    "train basis not a string": (lambda e: ["train", _config(e, "b123", basis=123)], "basis must be a string"),
    "train xc not a string": (lambda e: ["train", _config(e, "xc1", xc=[1])], "xc must be a string"),
    "train xc other than the base store's": (
        lambda e: ["train", _config(e, "blyp", xc="BLYP")],
        "xc 'BLYP' differs from the base store's functional 'PBE'",
    ),
    "train scf.density_fit other than the base store's": (
        lambda e: ["train", _config(e, "df", scf={"density_fit": True})],
        "scf.density_fit True differs from the base store's False",
    ),
    # hang
    "label --workers 0": (
        lambda e: ["label", H2O, "--method", "pbe", "--store", str(e["d"] / "w0.h5"), "--workers", "0"],
        "--workers must be a positive integer, got 0",
    ),
    "label --workers -2": (
        lambda e: ["label", H2O, "--method", "pbe", "--store", str(e["d"] / "w2.h5"), "--workers", "-2"],
        "--workers must be a positive integer",
    ),
    "eval --workers 0": (
        lambda e: ["eval", e["model"], e["target"], "--out", str(e["d"] / "ev0"), "--workers", "0"],
        "--workers must be a positive integer",
    ),
    # crash after compute: outputs checked first
    "scf --output unwritable": (
        lambda e: ["scf", H2O, "--output", e["file"] + "/r.json"],
        "cannot be written",
    ),
    "export to an unwritable path": (
        lambda e: ["export", e["target"], "--format", "extxyz", "--output", e["file"] + "/x.extxyz"],
        "cannot be written",
    ),
    "eval --out on a file": (
        lambda e: ["eval", e["model"], e["target"], "--out", e["file"]],
        "is a file, not a folder",
    ),
    "train workdir on a file": (
        lambda e: ["train", _config(e, "wd", workdir=e["file"])],
        "workdir",
    ),
    # tracebacks
    "NaN coordinates": (
        lambda e: ["scf", _xyz(e, "nan", "charge=0", "O 0 0 nan\nH 0 0.757 0.587\nH 0 -0.757 0.587")],
        "not a finite number",
    ),
    "charge=abc": (lambda e: ["scf", _xyz(e, "abc", "charge=abc multiplicity=1")], "charge='abc' is not an integer"),
    "--charge 10 leaves no electron": (lambda e: ["scf", H2O, "--charge", "10"], "leaves 0 electrons"),
    "--grid-level 99": (lambda e: ["scf", H2O, "--grid-level", "99"], "--grid-level must be an integer from 0 to 9"),
    "--xc nonsense --model none": (
        lambda e: ["scf", H2O, "--xc", "nonsense", "--model", "none"],
        "--xc 'nonsense' is not known to PySCF",
    ),
    "label --basis nonsense": (
        lambda e: ["label", H2O, "--method", "pbe", "--store", str(e["d"] / "bn.h5"), "--basis", "nonsense"],
        "--basis 'nonsense' is not known to PySCF",
    ),
    "truncated store (export)": (
        lambda e: ["export", e["truncated"], "--format", "extxyz", "--output", str(e["d"] / "t.extxyz")],
        "is truncated or damaged",
    ),
    "truncated store (label)": (
        lambda e: ["label", H2O, "--method", "pbe", "--store", e["truncated"]],
        "is truncated or damaged",
    ),
    "--scheduler bogus": (
        lambda e: ["label", H2O, "--method", "pbe", "--store", str(e["d"] / "sb.h5"), "--scheduler", "bogus"],
        "is not a Dask scheduler address",
    ),
    "--scheduler unreachable": (
        lambda e: [
            "label",
            H2O,
            "--method",
            "pbe",
            "--store",
            str(e["d"] / "su.h5"),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ],
        "no Dask scheduler answers there",
    ),
    "config lr: fast": (
        lambda e: ["train", _config(e, "lr", train={"lr": "fast"})],
        "train.lr must be a positive finite number, got 'fast'",
    ),
    "config hidden: [-5]": (
        lambda e: ["train", _config(e, "hid", model={"kind": "mlp", "hidden": [-5]})],
        "model hidden must be a list of positive layer widths",
    ),
    "config min_convergence: all": (
        lambda e: ["iterate", _config(e, "mc", base=None, frames=H2O, iterate={"min_convergence": "all"})],
        "iterate.min_convergence must be a number in [0, 1], got 'all'",
    ),
    # silent
    "charge=0.5": (lambda e: ["scf", _xyz(e, "half", "charge=0.5 multiplicity=1")], "charge=0.5 is not an integer"),
    "multiplicity=0": (lambda e: ["scf", _xyz(e, "m0", "charge=0 multiplicity=0")], "cannot have multiplicity 0"),
    "--grid-level -5": (lambda e: ["scf", H2O, "--grid-level", "-5"], "--grid-level must be an integer from 0 to 9"),
    "--conv-tol -1": (lambda e: ["scf", H2O, "--conv-tol", "-1"], "--conv-tol must be a positive finite number"),
    "--conv-tol nan": (lambda e: ["scf", H2O, "--conv-tol", "nan"], "--conv-tol must be a positive finite number"),
    "--conv-tol 0": (lambda e: ["scf", H2O, "--conv-tol", "0"], "--conv-tol must be a positive finite number, got 0"),
    "config retries: -3": (
        lambda e: ["iterate", _config(e, "re", base=None, frames=H2O, iterate={"retries": -3})],
        "iterate.retries must be an integer >= 0, got -3",
    ),
    "eval --base of another method": (
        lambda e: ["eval", e["model"], e["target"], "--base", e["target"], "--out", str(e["d"] / "evb")],
        "was made with method='hse06' but this run has method='pbe'",
    ),
    "config init_density for train": (
        lambda e: ["train", _config(e, "idt", init_density=e["base"])],
        "init_density: only iterate runs SCFs",
    ),
    "config init_density of another basis": (
        lambda e: ["iterate", _config(e, "idb", base=None, frames=H2O, init_density=e["base_sto3g"])],
        "label stores of different basis",
    ),
    "a store listed twice": (
        lambda e: ["train", _config(e, "twice", base=[e["base"], e["base"]])],
        "twice; list each store once",
    ),
    # issue #13: fine-tuning on CCSD(T) energies
    "fine-tune: force weight on an energy-only store": (
        lambda e: ["train", _config(e, "ccf", target=e["ccsdt"], losses={"force": 1.0})],
        "has no forces; set losses.force: 0",
    ),
    "fine-tune: eigenvalue weight on a ccsd(t) store": (
        lambda e: ["train", _config(e, "cce", target=e["ccsdt"], losses={"force": 0, "eigenvalue": 0.01})],
        "has no Kohn-Sham orbitals",
    ),
    "fine-tune: init model of another projector": (
        lambda e: [
            "train",
            _config(e, "ftp", init_model=e["model"], model={"kind": "mlp", "projector": {**PROJECTOR, "lmax": 1}}),
        ],
        "differs from init_model model.pt in projector",
    ),
    "fine-tune: init model of another basis": (
        lambda e: ["train", _config(e, "ftb", init_model=e["model_sto3g"])],
        "init_model",
    ),
    "fine-tune: init model of another base functional": (
        lambda e: ["train", _config(e, "ftx", init_model=e["model_blyp"])],
        "init_model",
    ),
    "fine-tune: freeze pattern matching nothing": (
        lambda e: ["train", _config(e, "frz", init_model=e["model"], train={"freeze": ["layer9.*"], "epochs": 1})],
        "train.freeze: 'layer9.*' matches no parameter",
    ),
    "export --format extxyz --output x.json": (
        lambda e: ["export", e["target"], "--format", "extxyz", "--output", str(e["d"] / "x.json")],
        "--format extxyz writes a .extxyz",
    ),
    "scf --output equal to the input": (
        lambda e: ["scf", _xyz(e, "in", "charge=0"), "--output", str(e["d"] / "in.xyz")],
        "is one of the input files",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_before_compute(case, env, capsys):
    make_argv, expected = CASES[case]
    argv = make_argv(env)
    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepks-es: error:") and expected in err, err
    assert "\n" not in err and "Traceback" not in err
    assert time.perf_counter() - t0 < 30  # refused before any SCF (an SCF of the monomer takes longer here)
    for arg in argv:  # nothing left behind: no store created by a refused label run
        if arg.endswith(".h5") and "truncated" not in arg and arg not in env.values():
            assert not (env["d"] / arg).exists(), arg


def test_second_label_run_on_a_busy_store_stops_at_once(tmp_path, capsys):
    """The data-loss row: a second ``deepks-es label`` on a store another run is writing is refused in
    one line naming the holder, before anything is computed, and the holder's records are intact."""
    from deepks_es.methods import LabelSpec

    dimer = read_frames([WATER / "2Cs.xyz"])[0]
    store = tmp_path / "busy.h5"
    metadata = LabelSpec(method="pbe", basis="sto-3g").validate().metadata()  # what the second run asks for
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(target=_writer, args=(store, dimer, range(4), 20.0, started, metadata))
    holder.start()
    try:
        assert started.wait(60)
        argv = ["label", str(WATER / "2Cs.xyz"), "--method", "pbe", "--basis", "sto-3g", "--store", str(store)]
        t0 = time.perf_counter()
        assert main([*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"is being written by pid {holder.pid}" in err and "\n" not in err
        assert time.perf_counter() - t0 < 20  # refused at once, nothing computed
        assert len(LabelStore(store)) == 4  # the holder's records, readable meanwhile
    finally:
        holder.terminate()
        holder.join()


def test_label_exits_nonzero_when_every_frame_failed(tmp_path, capsys):
    bad = tmp_path / "radicals.extxyz"
    bad.write_text("2\ncharge=0 multiplicity=1\nO 0 0 0\nH 0 0 0.97\n2\ncharge=0 multiplicity=1\nO 0 0 0\nH 0 0 0.98\n")
    store = tmp_path / "s.h5"
    argv = ["label", str(bad), "--method", "pbe", "--store", str(store), "--basis", "sto-3g", "--no-progress"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "failed 2" in captured.out and "2 frames failed" in captured.err
    assert len(LabelStore(store).records(include_failed=True)) == 2  # kept, flagged
    assert np.isnan(LabelStore(store).records(include_failed=True)[0]["e_tot"])


def test_config_density_fitting_follows_the_base(env, tmp_path):
    """The base SCF's density fitting, which the trained model records: train takes it from the base stores,
    iterate from its init model unless the config sets it, else off."""
    from deepks_es.config import load_config

    fitted = tmp_path / "df.pt"
    save_model(random_model(), fitted, basis="cc-pVDZ", xc="PBE", trained=True, density_fit=True)
    assert load_config(_config(env, "tr"), "train").scf.density_fit is False
    iterate = dict(base=None, frames=H2O)
    assert load_config(_config(env, "it0", **iterate), "iterate").scf.density_fit is False
    assert load_config(_config(env, "it1", init_model=str(fitted), **iterate), "iterate").scf.density_fit is True
    given = _config(env, "it2", init_model=str(fitted), scf={"density_fit": False}, **iterate)
    assert load_config(given, "iterate").scf.density_fit is False
    assert load_config(_config(env, "it3", init_model=env["model"], **iterate), "iterate").scf.density_fit is False
