"""Training data and losses: the first-order predictions reproduce a DeePKS SCF record, the model-free
force part equals PySCF's base gradient at that density, and every loss term's parameter gradient matches
central finite differences.

Frames: the BEGDB water dimer (data/water/2Cs.xyz) and monomer (H2O.xyz) in STO-3G (small, fast); target
labels are HSE06 in the same basis, so every loss term has a target.
"""

import json

import numpy as np
import pytest
import torch
from conftest import WATER, random_model

from deepks_es import save_model
from deepks_es.dataset import load_frames, make_batches, predict
from deepks_es.engine import key_of
from deepks_es.errors import DeePKSInputError
from deepks_es.losses import TERMS, frame_losses, predictions_for, total_loss
from deepks_es.methods import LabelSpec, label_frame
from deepks_es.store import LabelStore
from deepks_es.structures import frame_to_mol, read_frames

BASIS = "sto-3g"


def _store(path, frames, **spec):
    spec = LabelSpec(**{"basis": BASIS, "forces": True, "save_matrices": True, **spec}).validate()
    store = LabelStore(path, spec.metadata())
    for f in frames:
        store.write(label_frame(f, key_of(f, spec), spec))
    store.merge()
    return store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    frames = read_frames([WATER / "2Cs.xyz", WATER / "H2O.xyz"])
    model = random_model(seed=3, scale=0.02)
    save_model(model, tmp / "m.pt", basis=BASIS, xc="PBE", trained=False)
    from deepks_es import load_model

    model = load_model(tmp / "m.pt")
    return {
        "model": model,
        "pbe": _store(tmp / "pbe.h5", frames, method="pbe"),
        "deepks": _store(tmp / "deepks.h5", frames, method="deepks", model_paths=[str(tmp / "m.pt")]),
        "deepks_response": _store(
            tmp / "deepks_response.h5", frames, method="deepks", model_paths=[str(tmp / "m.pt")], save_response=True
        ),
        "hse06": _store(tmp / "hse06.h5", frames, method="hse06"),
        "frames": frames,
    }


def test_predictions_reproduce_the_scf_record(stores):
    """At the model that made the base record, the first-order predictions are the record itself."""
    frames, skipped = load_frames(stores["deepks"], stores["hse06"], base_model=stores["model"])
    assert len(frames) == 2 and not skipped
    records = {r["name"]: r for r in stores["deepks"].records()}
    for batch in make_batches(frames, 4):
        pred = predict(stores["model"], batch, create_graph=False)
        rec = records[batch.names[0]]
        assert abs(float(pred["e_tot"][0].detach()) - rec["e_tot"]) < 1e-9
        assert abs(float(pred["e_delta"][0].detach())) > 1e-3  # a non-trivial correction was taken out and put back
        np.testing.assert_allclose(pred["forces"][0].detach().numpy(), rec["forces"], atol=1e-8)
        np.testing.assert_allclose(pred["fock"][0].detach().numpy(), rec["fock"], atol=1e-9)
        # the record's orbital energies come from the last diagonalisation, one Fock build before the final
        # density (conv_tol 1e-10 Eh leaves ~1e-7 Eh there)
        np.testing.assert_allclose(pred["mo_energy"][0].detach().numpy(), rec["mo_energy"], atol=1e-6)


def test_level_response_predicts_the_retrained_models_scf_levels(stores):
    """With losses.level_response, predict's mean valence occupied level and LUMO at the base density are
    those a changed model (every weight moved by 0.01 x noise) gives in its own SCF, to first order: far
    closer than the fixed-density eigenvalues (deepks base of the stores' model; dimer and monomer)."""
    import copy

    from deepks_es.calc import build_scf

    frames, _ = load_frames(stores["deepks_response"], stores["hse06"], stores["model"], level_response=True)
    fixed_frames, _ = load_frames(stores["deepks_response"], stores["hse06"], stores["model"])
    assert all(f.level_response is None for f in fixed_frames)  # kept only when asked for
    model = copy.deepcopy(stores["model"])
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p += 0.01 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
    for f, f_fixed in zip(frames, fixed_frames):
        (batch,), (batch_fixed,) = make_batches([f], 1), make_batches([f_fixed], 1)
        sc = build_scf(f.mol, model=model)
        sc.kernel(dm0=f.dm)
        assert sc.converged

        occ, lumo = slice(batch.ncore, f.nocc), f.nocc
        want, got, fixed = (
            np.array([e[occ].mean(), e[lumo]])
            for e in (
                np.asarray(sc.mo_energy),
                predict(model, batch, create_graph=False)["mo_energy"][0].detach().numpy(),
                predict(model, batch_fixed, create_graph=False)["mo_energy"][0].detach().numpy(),
            )
        )
        assert np.all(np.abs(fixed - want) > 1e-4), (f.name, fixed - want)  # the density relaxes
        assert np.all(np.abs(got - want) < 0.1 * np.abs(fixed - want)), (f.name, got - want, fixed - want)


def test_level_response_missing_is_refused(stores):
    with pytest.raises(DeePKSInputError, match="has no level_response.*--save-response"):
        load_frames(stores["deepks"], stores["hse06"], stores["model"], level_response=True)
    with pytest.raises(DeePKSInputError, match="--save-response is for training base stores"):
        LabelSpec(method="hse06", save_response=True).validate()


def test_unconverged_base_frame_is_dropped_and_listed(stores, tmp_path):
    """iterate's rule: a frame whose base SCF did not converge (after the retry ladder) is never trained on:
    load_frames leaves it out, and convergence() names it for the iteration report's ``dropped``."""
    import shutil

    from deepks_es.workflow import all_records, convergence

    shutil.copyfile(stores["pbe"].path, tmp_path / "pbe.h5")
    base = LabelStore(tmp_path / "pbe.h5")
    dimer = next(r for r in base.records() if len(r["numbers"]) == 6)
    with base.lock():
        base.write({**dimer, "converged": False}, overwrite=True)
    frames, _ = load_frames(base, stores["hse06"])
    assert [len(f.numbers) for f in frames] == [3]
    assert convergence(all_records(base)) == (0.5, [dimer["name"]])


def test_archived_targets_batch_with_full_ones(stores):
    """A frame whose target keeps only the occupied + 1 virtual orbitals (a label archive) shares a batch with
    one holding all orbitals: the batch is cut to the common columns and the losses are those of the full
    target (they read occupied + n_virt orbitals)."""
    import dataclasses

    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    full = next(f for f in frames if len(f.numbers) == 3)
    keep = full.nocc + 1  # STO-3G water: 5 occupied, 2 virtual
    assert np.shape(full.target["mo_coeff"])[-1] > keep
    target = {**full.target, "mo_coeff": np.asarray(full.target["mo_coeff"])[:, :keep]}
    cut = dataclasses.replace(full, name="archived", target=target)
    model, terms = stores["model"], ["energy", "eigenvalue", "eigenvector"]
    (mixed,) = make_batches([full, cut], 4)
    assert mixed.target["mo_coeff"].shape[-1] == keep
    (alone,) = make_batches([full], 4)
    got = [frame_losses(predict(model, b, create_graph=False), b, terms, n_virt=1) for b in (mixed, alone)]
    for term in terms:
        torch.testing.assert_close(got[0][term], got[1][term].expand(2), rtol=1e-12, atol=0)


def test_uncached_integrals_give_the_same_predictions(stores, monkeypatch):
    """Frames above the integral cache limit recompute their integrals: same predictions, less memory."""
    from deepks_es import dataset

    cached, _ = load_frames(stores["pbe"], stores["hse06"])
    monkeypatch.setattr(dataset, "MAX_CACHED_INTEGRAL_BYTES", 0)
    uncached, _ = load_frames(stores["pbe"], stores["hse06"])
    assert all(f.integrals is None for f in uncached)
    assert sum(map(dataset.frame_nbytes, uncached)) < sum(map(dataset.frame_nbytes, cached)) / 2
    model = random_model(seed=4, scale=0.02)
    for a, b in zip(make_batches(cached, 4), make_batches(uncached, 4)):
        assert a.cached is not None and b.cached is None
        pa, pb = predict(model, a, create_graph=False), predict(model, b, create_graph=False)
        for key in ("e_tot", "forces", "fock", "mo_energy"):
            torch.testing.assert_close(pa[key], pb[key], rtol=0, atol=1e-12)


def test_partial_predictions_equal_the_full_ones(stores):
    """predict(outputs=...) computes only what a loss needs, with the same values as the full prediction."""
    model = random_model(seed=4, scale=0.02)
    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    batch = make_batches(frames, 4)[0]
    full = predict(model, batch, create_graph=False)
    for terms in (["energy"], ["force"], ["eigenvalue"], ["energy", "eigenvector"]):
        part = predict(model, batch, create_graph=False, outputs=predictions_for(terms))
        assert set(predictions_for(terms)) <= set(part)
        for key, value in part.items():
            torch.testing.assert_close(value, full[key], rtol=0, atol=0)
    assert set(predict(model, batch, outputs=("e_tot",))) == {"e_tot", "e_delta"}
    with pytest.raises(ValueError, match="unknown outputs"):
        predict(model, batch, outputs=("force",))


def test_f_rest_is_the_base_gradient_at_the_corrected_density(stores):
    """f_rest (record forces with the model's explicit and Pulay parts taken out) equals PySCF's PBE
    gradient evaluated at the corrected density with the base energy-weighted density D F_base D / 2."""
    from pyscf import dft

    frame = next(f for f in load_frames(stores["deepks"], stores["hse06"], base_model=stores["model"])[0])
    mol = frame_to_mol(next(f for f in stores["frames"] if f.name == frame.name), BASIS)
    rec = next(r for r in stores["deepks"].records() if r["name"] == frame.name)
    mf = dft.RKS(mol, xc="PBE")
    mf.mo_coeff, mf.mo_occ, mf.mo_energy = rec["mo_coeff"], rec["mo_occ"], rec["mo_energy"]
    dm = mf.make_rdm1()
    fock_base = mf.get_fock(dm=dm)
    grad = mf.nuc_grad_method()
    grad.make_rdm1e = lambda *a, **k: dm @ fock_base @ dm / 2
    np.testing.assert_allclose(frame.fock_base, fock_base, atol=1e-9)
    # 1e-7: the record's orbital energies lag the final density by one Fock build (see above)
    np.testing.assert_allclose(frame.f_rest, -grad.kernel(), atol=1e-7)
    assert np.abs(frame.f_rest - rec["forces"]).max() > 1e-4  # the model's part was not negligible
    grad.make_rdm1e = lambda *a, **k: dm @ rec["fock"] @ dm / 2  # the Pulay term of v_delta left in
    assert np.abs(frame.f_rest + grad.kernel()).max() > 1e-5


def test_pbe_base_has_no_correction(stores):
    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    records = {r["name"]: r for r in stores["pbe"].records()}
    for f in frames:
        assert f.e_base == records[f.name]["e_tot"]
        np.testing.assert_array_equal(f.f_rest, records[f.name]["forces"])


@pytest.mark.parametrize("kind, skip_core", [("mlp", False), ("mlp", True), ("mlp_coupled", False), ("e3", False)])
@pytest.mark.parametrize("term", TERMS)
def test_loss_gradient_finite_difference(stores, term, kind, skip_core):
    """d loss / d theta along a random parameter direction vs central differences (h = 1e-5)."""
    model = random_model(seed=5, scale=0.05, kind=kind)
    frames, _ = load_frames(stores["pbe"], stores["hse06"], projector=model.projector)
    _check_loss_gradient(model, make_batches(frames, 4), term, skip_core)


@pytest.mark.parametrize("term", ["eigenvalue", "gap"])
def test_loss_gradient_with_level_response(stores, term):
    """The eigenvalue and gap terms on the first-order self-consistent levels (losses.level_response):
    parameter gradient vs central differences, from a deepks base (dV counts from the base model's v_delta)."""
    frames, _ = load_frames(stores["deepks_response"], stores["hse06"], stores["model"], level_response=True)
    assert all(f.level_response is not None and np.abs(f.v_delta_base).max() > 1e-4 for f in frames)
    _check_loss_gradient(random_model(seed=5, scale=0.05), make_batches(frames, 4), term, True)


def _check_loss_gradient(model, batches, term, skip_core):
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(7)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    weights = {term: 1.0}

    def loss():
        # what training computes for this term alone (the energy without v_delta, forces or eigenvalues)
        outputs = predictions_for([term])
        losses = [frame_losses(predict(model, b, outputs=outputs), b, [term], 1, skip_core) for b in batches]
        return sum(total_loss(x, weights) for x in losses)

    value = loss()
    grads = torch.autograd.grad(value, params, allow_unused=True, materialize_grads=True)
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
    h = 1e-5
    vals = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * h * d)
        vals.append(float(loss().detach()))
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(sign * h * d)
    fd = (vals[0] - vals[1]) / (2 * h)
    assert abs(analytic) > 0
    assert abs(analytic - fd) <= 1e-6 * abs(analytic) + 1e-14, (analytic, fd)


def _write_config(path, **cfg):
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def small_targets(tmp_path_factory):
    """HSE06 labels (STO-3G, forces, matrices) of tests/data/water_small.extxyz (6 monomers, 6 dimers)."""
    from test_label import DATA, _label

    store = tmp_path_factory.mktemp("targets") / "hse06.h5"
    assert _label(DATA, "--method", "hse06", "--forces", "--save-matrices", "--store", store) == 0
    return store


def test_iterate_end_to_end_and_resume(tmp_path, small_targets, capsys):
    """deepks-es iterate on the small set: base SCF, training, SCF check, the next iteration and the final
    SCF pass; the losses fall, every report has a convergence rate, and a rerun redoes nothing."""
    import yaml
    from test_label import DATA

    from deepks_es import load_model
    from deepks_es.cli import main
    from deepks_es.settings import SCFSettings
    from deepks_es.structures import read_frames
    from deepks_es.workflow import run_labels

    cfg = _write_config(
        tmp_path / "it.yaml",
        workdir="run",
        target=str(small_targets),
        frames=[str(DATA)],
        basis="sto-3g",
        losses={"energy": 1.0, "force": 1.0, "hamiltonian": 0.005, "eigenvalue": 0.01, "eigenvector": 0.1},
        train={"epochs": 30, "lr": 3e-4, "batch_size": 6, "valid_fraction": 0.2, "checkpoint_every": 10},
        iterate={"iterations": 2, "epochs": [30, 10], "check_sample": 2, "restart_lr": 0.5},
        scf={"threads_per_worker": 1},
    )
    assert main(["iterate", str(cfg), "--no-progress"]) == 0
    # a new model is prefitted (iteration 0); the warm start of iteration 1 refits the energy shift at its density
    assert capsys.readouterr().out.count("energy shift refitted") == 1
    run = tmp_path / "run"
    # iteration 1 warm-starts from model 0 at restart_lr x the learning rate (after its first epoch's decay;
    # history[0] is epoch 0, the starting weights)
    first_lr = [load_model(run / f"iter.{k:02d}" / "model.pt").settings["training"]["history"][1]["lr"] for k in (0, 1)]
    assert first_lr[0] == pytest.approx(3e-4 * (1e-5 / 3e-4) ** (1 / 29), rel=1e-9)
    assert first_lr[1] == pytest.approx(0.5 * 3e-4 * (1e-5 / 3e-4) ** (1 / 9), rel=1e-9)
    reports = [json.loads((run / f"iter.{k:02d}" / "report.json").read_text()) for k in range(3)]
    assert [r["convergence"] for r in reports] == [1.0, 1.0, 1.0]
    # errors by cluster size (JSON keys: numbers of waters) cover every frame of the iteration
    assert all(sum(row["frames"] for row in r["by_size"].values()) == 12 for r in reports)
    # each SCF starts from a converged density of the frame: iteration 0 from its target label's (HSE06; none
    # was stored before), k >= 1 from iteration k-1's; each pass takes fewer cycles than PBE from PySCF's guess
    cycles = [sum(r["cycles"] for r in LabelStore(run / f"iter.{k:02d}" / "base.h5").records()) for k in range(3)]
    scf = SCFSettings(threads_per_worker=1)
    cold = run_labels(read_frames([DATA]), tmp_path / "cold.h5", "pbe", basis="sto-3g", scf=scf, progress=False)
    assert max(cycles) < sum(r["cycles"] for r in cold.records()), cycles
    # the per-iteration table (README's): one row per iteration with its report's figures
    rows = [line.split(" | ") for line in (run / "iterations.md").read_text().splitlines()[2:]]
    assert [row[0] for row in rows] == ["| 0", "| 1", "| 2"] and rows[0][1] == "base functional"
    for row, r in zip(rows, reports):
        assert row[5] == f"{r['scf_errors']['energy_mae_kcal']:.3f}" and row[4] == f"{cycles[int(row[0][2:])] / 12:.1f}"
    # the SCF pass's time is the sum of its frames' wall times (true for a pass resumed after a kill)
    walls = [sum(r["wall_s"] for r in LabelStore(run / f"iter.{k:02d}" / "base.h5").records()) for k in range(3)]
    assert [r["scf_wall_s"] for r in reports] == pytest.approx(walls) and min(walls) > 0
    training = load_model(run / "model.pt").settings["training"]
    history = training["history"]
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    # provenance in the checkpoint: what the model reproduces, with its program versions
    assert training["reference"]["method"] == "hse06" and "pyscf" in training["reference"]["versions"]
    # the model of iteration 1 starts where iteration 0 ended: its SCF errors are those of model 0
    e0, e1 = reports[0]["scf_errors"], reports[1]["scf_errors"]
    assert e1["force_rmse_ev_ang"] < e0["force_rmse_ev_ang"]
    # a rerun redoes nothing, also from a workdir moved elsewhere (another machine): reports name their models
    # relative to the workdir
    capsys.readouterr()
    run = run.rename(tmp_path / "moved")
    cfg.write_text(cfg.read_text().replace("workdir: run", "workdir: moved"))
    assert main(["iterate", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("done before") == 3
    # one more iteration continues the finished run: its final SCF pass becomes iteration 2's base
    cfg.write_text(cfg.read_text().replace("iterations: 2", "iterations: 3"))
    assert main(["iterate", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("done before") == 2
    report = json.loads((run / "iter.02" / "report.json").read_text())
    assert report["model"] == "iter.02/model.pt" and report["model_in"] == "iter.01/model.pt"  # no machine path
    assert (run / "iter.03" / "report.json").is_file()
    # a new run from that model whose first pass starts from the densities of the last pass (init_density):
    # each SCF starts at (near) its converged density, fewer cycles than that pass took
    last = run / "iter.03" / "base.h5"
    cfg2 = _write_config(
        tmp_path / "it2.yaml",
        **{**yaml.safe_load(cfg.read_text()), "workdir": "again", "init_model": str(run / "model.pt")},
        init_density=str(last),
    )
    cfg2.write_text(cfg2.read_text().replace("iterations: 3", "iterations: 1"))
    # --stop-after 0: model 0 is trained and becomes model.pt, iteration 1's SCF pass waits for a plain rerun;
    # an iteration that is not trained (only 0 of 1 is) is refused before any compute
    capsys.readouterr()
    assert main(["iterate", str(cfg2), "--stop-after", "1", "--no-progress"]) == 2
    assert "--stop-after 1" in capsys.readouterr().err and not (tmp_path / "again" / "iter.00").exists()
    assert main(["iterate", str(cfg2), "--stop-after", "0", "--no-progress"]) == 0
    again_dir = tmp_path / "again"
    assert (again_dir / "model.pt").read_bytes() == (again_dir / "iter.00" / "model.pt").read_bytes()
    assert not (again_dir / "iter.01").exists()
    assert main(["iterate", str(cfg2), "--no-progress"]) == 0
    assert "iteration 0: done before" in capsys.readouterr().out and (again_dir / "iter.01" / "report.json").is_file()
    again = LabelStore(again_dir / "iter.00" / "base.h5").records()
    assert sum(r["cycles"] for r in again) < sum(r["cycles"] for r in LabelStore(last).records())


def test_iterate_train_and_scf_with_the_e3_model(tmp_path, small_targets):
    """deepks-es iterate with ``model: {kind: e3}`` (base SCF, prefit, training, SCF check with the model,
    final SCF pass), then deepks-es scf --model on a water cluster: the e3 model works everywhere the
    mlp does, through the CLI. On a density-fitted base, which the model records and deepks-es scf then
    uses."""
    from test_label import DATA

    from deepks_es import load_model
    from deepks_es.cli import main
    from deepks_es.store import LabelStore

    cfg = _write_config(
        tmp_path / "it.yaml",
        workdir="run",
        target=str(small_targets),
        frames=[str(DATA)],
        basis="sto-3g",
        model={"kind": "e3", "hidden": "8x0e+4x1o+4x1e+4x2e", "layers": 1},
        losses={"energy": 1.0, "force": 1.0, "eigenvector": 0.1},
        train={"epochs": 20, "lr": 3e-3, "batch_size": 6, "valid_fraction": 0.2, "checkpoint_every": 5},
        iterate={"iterations": 1, "epochs": [20], "check_sample": 2},
        scf={"threads_per_worker": 1, "density_fit": True},
    )
    assert main(["iterate", str(cfg), "--no-progress"]) == 0
    run = tmp_path / "run"
    model = load_model(run / "model.pt")
    assert model.kind == "e3" and model.projector.blocks == "atom" and model.settings["trained"]
    assert model.settings["density_fit"] and LabelStore(run / "iter.01" / "base.h5").metadata["density_fit"]
    history = model.settings["training"]["history"]
    assert history[-1]["train"]["loss"] < 0.8 * history[0]["train"]["loss"]
    reports = [json.loads((run / f"iter.{k:02d}" / "report.json").read_text()) for k in range(2)]
    assert [r["convergence"] for r in reports] == [1.0, 1.0]
    assert reports[1]["scf_errors"]["force_rmse_ev_ang"] < reports[0]["scf_errors"]["force_rmse_ev_ang"]
    out = tmp_path / "scf.json"
    assert (
        main(["scf", str(WATER / "6PR.xyz"), "--model", str(run / "model.pt"), "--forces", "--output", str(out)]) == 0
    )
    record = json.loads(out.read_text())  # one structure: one object
    assert record["converged"] and record["e_delta"] != 0 and record["density_fit"]


def test_train_seeds_make_a_committee(tmp_path, small_targets):
    """deepks-es train --seeds 1 2: two different models from the same data, usable as a committee."""
    from deepks_es import load_model
    from deepks_es.cli import main

    base = tmp_path / "pbe.h5"
    from test_label import DATA, _label

    assert _label(DATA, "--method", "pbe", "--forces", "--save-matrices", "--store", base) == 0
    cfg = _write_config(
        tmp_path / "t.yaml",
        workdir="ens",
        target=str(small_targets),
        base=str(base),
        basis="sto-3g",
        train={"epochs": 3, "lr": 1e-4, "lr_final": 1e-5, "batch_size": 6, "checkpoint_every": 3},
    )
    assert main(["train", str(cfg), "--seeds", "1", "2", "--no-progress"]) == 0
    m1, m2 = (load_model(tmp_path / "ens" / f"model.seed{s}.pt") for s in (1, 2))
    assert m1.settings["sha256"] != m2.settings["sha256"]
    assert m1.settings["trained"] and m1.settings["basis"] == "sto-3g"
    store = tmp_path / "committee.h5"
    args = [
        "--method",
        "deepks",
        "--forces",
        "--store",
        store,
        "--model",
        *[tmp_path / "ens" / f"model.seed{s}.pt" for s in (1, 2)],
    ]
    assert _label(DATA, *args) == 0
    records = LabelStore(store).records(include_unconverged=True)
    assert len(records) == 12 and all(r["converged"] for r in records)
    assert all(r["max_devi_f"] > 0 for r in records)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"losses": {"energy": -1}}, "losses.energy"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"trian": {}}, "unknown key 'trian'"),
        ({"target": "missing.h5"}, "does not exist"),
        ({"base": None}, "train needs a base label store"),
        ({"model": {"kind": "mlp", "descriptor": "eigen"}}, "model descriptor must be one of"),
        ({"model": {"kind": "e3", "descriptor": "power_traces"}}, "unexpected keyword argument 'descriptor'"),
        ({"model": {"kind": "e3", "hidden": "8x1o"}}, "needs scalars 0e"),
    ],
)
def test_config_errors_are_clear(tmp_path, small_targets, change, message, capsys):
    from deepks_es.cli import main

    cfg = {"target": str(small_targets), "base": str(small_targets), **change}
    path = _write_config(tmp_path / "bad.yaml", **cfg)
    assert main(["train", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_eval_writes_table_and_plots(tmp_path, small_targets, capsys):
    """deepks-es eval on the small HSE06 store: a table with the base and the model, and the PNGs; a --base
    store holding some of the structures is reused and the rest computed into it."""
    from test_label import DATA

    from deepks_es.cli import main
    from deepks_es.structures import read_frames
    from deepks_es.workflow import run_labels

    model = tmp_path / "m.pt"
    save_model(random_model(seed=2), model, basis="sto-3g", xc="PBE", trained=True, training={"history": []})
    out = tmp_path / "eval"
    base_path = tmp_path / "pbe_base.h5"
    first = run_labels(read_frames([DATA])[:4], base_path, "pbe", basis="sto-3g", forces=True, progress=False)
    first = {r["key"]: r["wall_s"] for r in first.records(matrices=False)}
    frames = str(DATA)
    args = ["eval", str(model), str(small_targets), "--out", str(out), "--frames", frames, "--base", str(base_path)]
    assert main([*args, "--threads-per-worker", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| PBE |" in text and "| DeePKS |" in text and "F RMSE" in text
    result = json.loads((out / "eval.json").read_text())
    assert result["rows"]["PBE"]["frames"] == 12 and result["rows"]["PBE"]["convergence"] == 1.0
    # the random model changes the errors, so the DeePKS row is a real second calculation
    assert result["rows"]["DeePKS"]["energy_mae_kcal"] != result["rows"]["PBE"]["energy_mae_kcal"]
    for name in ("parity_forces.png", "parity_orbitals.png", "energy_errors.png", "energy_per_water.png", "dos.png"):
        assert (out / name).stat().st_size > 1000
    assert "by cluster size" in text and sum(r["PBE"]["frames"] for r in result["by_size"].values()) == 12
    # SCF cycles, per row and the model's worst excess over the base on one structure, from the stores
    from deepks_es.store import LabelStore, geometry_key

    base_records = LabelStore(base_path).records(matrices=False)
    assert len(base_records) == 12 and {r["key"]: r["wall_s"] for r in base_records if r["key"] in first} == first
    base = {geometry_key(r): r["cycles"] for r in base_records}
    model_cycles = {
        geometry_key(r): r["cycles"] for r in LabelStore(next(out.glob("deepks_*.h5"))).records(matrices=False)
    }
    assert result["rows"]["PBE"]["cycles_mean"] == pytest.approx(np.mean(list(base.values())))
    assert result["rows"]["DeePKS"]["cycles_over_base_max"] == max(model_cycles[k] - base[k] for k in base)
    assert "cycles over base (max)" in text


def test_errors_by_size_per_water():
    """by_size: the mean signed energy error per water, its spread, the force RMSE and the frontier levels'
    errors per cluster size, from hand-made pairs (errors in kcal/mol and eV chosen; a constant per-water
    error reads the same at every size)."""
    from deepks_es.evaluate import by_size, size_table
    from deepks_es.output import EV_PER_ANG_PER_AU, HARTREE2EV, KCAL_PER_MOL_PER_HARTREE

    def pair(n, err_kcal, df=0.0, dlumo_ev=None):
        numbers = np.tile([8, 1, 1], n)
        rec = {"numbers": numbers, "e_tot": err_kcal / KCAL_PER_MOL_PER_HARTREE, "forces": np.full((3 * n, 3), df)}
        target = {"numbers": numbers, "e_tot": 0.0, "forces": np.zeros((3 * n, 3))}
        if dlumo_ev is not None:  # orbital energies (Eh, 5 occupied per water): only the LUMO off, by dlumo_ev
            mo_occ = np.r_[np.full(5 * n, 2.0), 0.0, 0.0]
            mo_energy = np.linspace(-20.0, 1.0, 5 * n + 2)
            rec.update(mo_occ=mo_occ, mo_energy=mo_energy + np.eye(5 * n + 2)[5 * n] * dlumo_ev / HARTREE2EV)
            target.update(mo_occ=mo_occ, mo_energy=mo_energy)
        return rec, target

    runs = {"m": [pair(1, -0.2), pair(1, -0.2), pair(2, -0.3, dlumo_ev=0.1), pair(2, -0.5, df=0.01, dlumo_ev=-0.3)]}
    sizes = by_size(runs)
    assert list(sizes) == [1, 2]
    one, two = sizes[1]["m"], sizes[2]["m"]
    assert one["frames"] == 2 and one["mse_per_water_kcal"] == pytest.approx(-0.2) and one["std_per_water_kcal"] < 1e-12
    assert two["energy_mae_kcal"] == pytest.approx(0.4) and two["mse_per_water_kcal"] == pytest.approx(-0.2)
    assert two["std_per_water_kcal"] == pytest.approx(0.05)  # std of (-0.3, -0.5) / 2 waters
    assert two["force_rmse_ev_ang"] == pytest.approx(0.01 / np.sqrt(2) * EV_PER_ANG_PER_AU)
    # levels only where both records have them: none for the monomers, mean signed LUMO and gap MAE for the dimers
    # (valence eig RMSE: the LUMO errors among 2 x 9 valence levels, 8 occupied without the 1s cores + the LUMO)
    assert (
        "lumo_mse_ev" not in one
        and two["lumo_mse_ev"] == pytest.approx(-0.1)
        and two["gap_mae_ev"] == pytest.approx(0.2)
        and two["eig_rmse_ev"] == pytest.approx(np.sqrt((0.1**2 + 0.3**2) / 18))
    )
    assert "| 2 | 2 | 0.400 | -0.200 ± 0.050 | 0.3636 | -0.100 | 0.200 |" in size_table(sizes)
    assert "| 1 | 2 | 0.200 | -0.200 ± 0.000 | 0.0000 | – | – |" in size_table(sizes)


def test_eval_row_counts_failed_records_as_not_converged():
    """An eval table row: a record with a non-finite energy (or an error) counts against the convergence
    rate and is left out of the errors, like an unconverged one; the errors are those of the good record."""
    from deepks_es.evaluate import _row
    from deepks_es.store import geometry_key
    from deepks_es.output import KCAL_PER_MOL_PER_HARTREE

    def record(name, e_tot, converged=True, error=""):
        return {
            "name": name,
            "numbers": np.array([8, 1, 1]),
            "positions_ang": np.eye(3) * (1 + len(name)),
            "charge": 0,
            "multiplicity": 1,
            "e_tot": e_tot,
            "converged": converged,
            "error": error,
            "cycles": 7,
        }

    records = [
        record("a", 0.5 / KCAL_PER_MOL_PER_HARTREE),
        record("bb", np.nan),
        record("ccc", 0.0, False),
        record("dddd", 0.0, error="SCF crashed"),
    ]
    targets = {geometry_key(r): {**r, "e_tot": 0.0} for r in records}
    row = _row(records, targets)
    assert row["convergence"] == pytest.approx(0.25) and row["frames"] == 1 and row["cycles_mean"] == 7.0
    assert row["energy_mae_kcal"] == pytest.approx(0.5)


def test_orbital_errors_split_into_shift_and_lumo():
    """scf_errors on hand-made water dimers (2 O 1s cores, 8 valence occupied, 2 virtuals; eV chosen): a
    common shift of the occupied valence levels reads as occ_shift_ev and moves the gap, a LUMO error reads
    as lumo_mae_ev, and the cores enter neither."""
    from pyscf.data.nist import HARTREE2EV

    from deepks_es.store import geometry_key
    from deepks_es.workflow import scf_errors

    def record(x, d_core=0.0, d_occ=0.0, d_lumo=0.0):
        coords = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [2.9, 0, 0], [3.3, 0.8, 0], [3.3, -0.8, 0]])
        mo_energy = np.linspace(-20.0, 1.0, 12) + np.r_[[d_core] * 2, [d_occ] * 8, d_lumo, 0.0] / HARTREE2EV
        mo_occ = np.r_[np.full(10, 2.0), 0.0, 0.0]
        numbers = np.tile([8, 1, 1], 2)
        geometry = {"numbers": numbers, "positions_ang": coords + x, "charge": 0, "multiplicity": 1}
        return {**geometry, "e_tot": 0.0, "mo_energy": mo_energy, "mo_occ": mo_occ}

    targets = [record(0.0), record(0.1)]
    by_key = {geometry_key(t): t for t in targets}
    shifted = [record(0.0, d_core=0.5, d_occ=0.05, d_lumo=0.2), record(0.1, d_core=0.5, d_occ=0.05, d_lumo=-0.1)]
    errors = scf_errors(shifted, by_key)
    assert errors["occ_shift_ev"] == pytest.approx(0.05) and errors["lumo_mae_ev"] == pytest.approx(0.15)
    assert errors["gap_mae_ev"] == pytest.approx((0.15 + 0.15) / 2)  # LUMO - HOMO error: 0.2 - 0.05, -0.1 - 0.05
    assert errors["eig_rmse_ev"] == pytest.approx(np.sqrt((16 * 0.05**2 + 0.2**2 + 0.1**2) / 18))
    assert errors["core_mae_ev"] == pytest.approx(0.5)


def test_training_keeps_the_best_logged_weights(stores):
    """With a step size that makes the loss jump, the model left behind is the logged epoch of lowest loss,
    not the last one."""
    from deepks_es.settings import LossSettings, TrainSettings
    from deepks_es.train import evaluate, train

    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    model = random_model(seed=5, scale=0.02)
    losses = LossSettings(energy=1.0, force=1.0, hamiltonian=0.0, eigenvalue=0.0, gap=0.0, eigenvector=0.0)
    weights = losses.weights
    opts = TrainSettings(epochs=12, lr=0.05, lr_final=0.05, batch_size=1, checkpoint_every=1)
    history = train(model, frames, [], opts, losses, log=lambda s: None, progress=False)
    losses = [e["train"]["loss"] for e in history]
    assert losses[-1] > min(losses)  # the loss did jump: the check below is not trivially the last epoch
    assert [e["epoch"] for e in history if e["kept"]] == [history[int(np.argmin(losses))]["epoch"]]
    now = evaluate(model, make_batches(frames, 1), weights, n_virt=1)["loss"]
    assert now == pytest.approx(min(losses), rel=1e-12)


def test_a_warm_start_that_only_makes_the_model_worse_keeps_the_starting_weights(stores):
    """Epoch 0 (the starting weights) is logged and kept when every later logged epoch is worse: a warm
    start of a trained model never leaves it worse at its own densities (stage 7's first warm start at
    restart_lr 0.3 went from validation loss 2.8e-6 to 1.7e-5 in one epoch)."""
    import copy

    from deepks_es.settings import LossSettings, TrainSettings
    from deepks_es.train import train

    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    model = random_model(seed=5, scale=0.02)
    losses = LossSettings(energy=1.0, force=1.0, hamiltonian=0.0, eigenvalue=0.0, gap=0.0, eigenvector=0.0)
    fit = TrainSettings(epochs=40, lr=1e-3, lr_final=1e-4, batch_size=2, checkpoint_every=40)
    train(model, frames, [], fit, losses, log=lambda s: None, progress=False)
    start = copy.deepcopy(model.state_dict())
    # the warm start: no prefit, the energy shift kept, steps far too large for a trained model
    warm = TrainSettings(
        epochs=3, lr=0.05, lr_final=0.05, batch_size=1, checkpoint_every=1, prefit=False, refit_e_shift=False
    )
    history = train(model, frames, [], warm, losses, log=lambda s: None, progress=False)
    assert history[0]["epoch"] == 0 and min(e["train"]["loss"] for e in history[1:]) > history[0]["train"]["loss"]
    assert [e["epoch"] for e in history if e["kept"]] == [0]
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_learning_rate_warmup(stores):
    """warmup_epochs ramps the learning rate linearly, then it decays exponentially to lr_final."""
    from deepks_es.settings import LossSettings, TrainSettings
    from deepks_es.train import train

    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    opts = TrainSettings(epochs=6, lr=1e-3, lr_final=1e-4, warmup_epochs=4, batch_size=4, checkpoint_every=1)
    history = train(random_model(seed=6), frames, [], opts, LossSettings(), log=lambda s: None, progress=False)
    gamma = 0.1 ** (1 / 5)
    expected = [1e-3 * gamma**e * min(1.0, (e + 1) / 4) for e in range(0, 7)]  # the lr of the next epoch
    np.testing.assert_allclose([h["lr"] for h in history], expected, rtol=1e-12)


def test_fine_tuning_refits_the_energy_shift(stores):
    """A new reference level (here a made-up per-element offset) is absorbed by the refitted energy shift:
    after one refit, the energy errors have no per-element part left, so a second refit changes nothing."""
    from deepks_es.train import refit_e_shift

    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    batches = make_batches(frames, 4)
    model = random_model(seed=7, scale=0.02)
    with torch.no_grad():
        model.e_shift += torch.tensor([0.05, -0.3], dtype=model.e_shift.dtype)
    first = refit_e_shift(model, batches)
    second = refit_e_shift(model, batches)
    assert float(first.abs().max()) > 1e-2 and float(second.abs().max()) < 1e-10


def test_fine_tuning_freeze_and_l2_pull(stores):
    """``train.freeze`` keeps the named parameters at their initial values; ``train.l2_init`` (L2-SP) keeps
    the weights closer to where they started than the same training without it; the penalty's gradient is
    2 (w - w0) / n_weights."""
    import copy

    from deepks_es.settings import LossSettings, TrainSettings
    from deepks_es.train import l2_init_penalty, train

    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    losses = LossSettings(energy=1.0, force=1.0, hamiltonian=0.0, eigenvalue=0.0, gap=0.0, eigenvector=0.0)
    start = random_model(seed=8, scale=0.02)
    w0 = {n: p.detach().clone() for n, p in start.named_parameters()}

    def moved(model):
        return sum(float(((p.detach() - w0[n]) ** 2).sum()) for n, p in model.named_parameters() if n != "e_shift")

    common = dict(epochs=4, lr=1e-3, lr_final=1e-3, batch_size=4, checkpoint_every=1, prefit=False)
    runs = {}
    for name, extra in {"free": {}, "frozen": {"freeze": ["mlp.0.*"]}, "l2": {"l2_init": 1e3}}.items():
        model = copy.deepcopy(start)
        train(model, frames, [], TrainSettings(**common, **extra), losses, log=lambda s: None, progress=False)
        runs[name] = model
    frozen = dict(runs["frozen"].named_parameters())
    assert torch.equal(frozen["mlp.0.weight"].detach(), w0["mlp.0.weight"])
    assert not torch.equal(frozen["mlp.2.weight"].detach(), w0["mlp.2.weight"])
    assert moved(runs["free"]) > 0 and moved(runs["l2"]) < 0.5 * moved(runs["free"])
    # the penalty's gradient
    params = {n: p.detach().clone().requires_grad_(True) for n, p in runs["free"].named_parameters()}
    init = {n: w for n, w in w0.items() if n != "e_shift"}
    l2_init_penalty(params, init).backward()
    n_weights = sum(w.numel() for w in init.values())
    for n, w in init.items():
        torch.testing.assert_close(params[n].grad, 2 * (params[n].detach() - w) / n_weights)
    assert params["e_shift"].grad is None


def test_cc_targets_serve_energies_only(stores, tmp_path):
    """A ccsd(t) store's orbitals are RHF's: as targets (training, iterate and eval errors) its records
    give the energy and nothing orbital, so no loss term or error is computed against RHF orbitals."""
    from deepks_es.dataset import target_records
    from deepks_es.workflow import scf_errors

    cc = _store(tmp_path / "cc.h5", stores["frames"], method="ccsd(t)", forces=False, save_matrices=False)
    assert all(r["mo_energy"] is not None for r in cc.records())  # stored, for the record
    frames, _ = load_frames(stores["pbe"], cc)
    assert len(frames) == 2
    assert all(f.target.get("forces") is None and f.target.get("mo_energy") is None for f in frames)
    refs = {r["key"]: r for r in target_records(cc)}
    assert all(r.get("mo_energy") is None for r in refs.values())
    from deepks_es.dataset import geometry_key

    errors = scf_errors(stores["pbe"].records(), {geometry_key(r): r for r in refs.values()})
    assert errors["frames"] == 2 and "energy_mae_kcal" in errors and "eig_rmse_ev" not in errors


def test_fine_tune_on_ccsd_t_energies_from_the_cli(stores, tmp_path, capsys):
    """``deepks-es train`` with ``init_model`` on an energy-only CCSD(T) store (tiny data, STO-3G): the
    energy shift is refitted first, the energies get closer to CCSD(T), the model keeps the init model's
    architecture and records CCSD(T) as its reference."""
    from deepks_es import load_model
    from deepks_es.cli import main
    from deepks_es.train import evaluate

    cc = _store(tmp_path / "cc.h5", stores["frames"], method="ccsd(t)", forces=False, save_matrices=False)
    init = tmp_path / "init.pt"
    save_model(random_model(seed=9, scale=0.02), init, basis=BASIS, xc="PBE", trained=True)
    cfg = _write_config(
        tmp_path / "ft.yaml",
        workdir="ft",
        target=str(cc.path),
        base=str(stores["pbe"].path),
        init_model=str(init),
        losses={"energy": 1.0, "force": 0.0, "hamiltonian": 0, "eigenvalue": 0, "gap": 0, "eigenvector": 0},
        train={"epochs": 5, "lr": 1e-4, "lr_final": 1e-5, "batch_size": 2, "valid_fraction": 0.0, "l2_init": 1.0},
    )
    assert main(["train", str(cfg), "--no-progress"]) == 0
    assert "energy shift refitted to the targets" in capsys.readouterr().out
    tuned, start = load_model(tmp_path / "ft" / "model.pt"), load_model(init)
    assert tuned.settings["training"]["reference"]["method"] == "ccsd(t)"
    assert tuned.init_args() == start.init_args()
    frames, _ = load_frames(stores["pbe"], cc)
    weights = {"energy": 1.0}

    def mae(model):
        return evaluate(model, make_batches(frames, 2), weights, n_virt=1)["energy_mae_kcal"]

    assert mae(tuned) < 0.1 * mae(start)  # the CCSD(T) - PBE offset of tens of kcal/mol is gone


def test_checkpoint_resumes_only_the_same_settings(stores, tmp_path):
    """A checkpoint is resumed by a run of the same settings and frames; a changed config starts over."""
    from deepks_es.settings import LossSettings, TrainSettings
    from deepks_es.train import train

    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    losses = LossSettings(energy=1.0, force=1.0, hamiltonian=0.0, eigenvalue=0.0, gap=0.0, eigenvector=0.0)
    ckpt = tmp_path / "t.ckpt"
    lines = []

    def run(epochs):
        opts = TrainSettings(epochs=epochs, lr=1e-4, lr_final=1e-5, batch_size=4, checkpoint_every=1)
        return train(random_model(seed=10), frames, [], opts, losses, 0, ckpt, lines.append, progress=False)

    run(2)
    history = run(2)  # the same run again: nothing left to do, its history comes back
    assert [e["epoch"] for e in history] == [0, 1, 2] and not any("starts over" in s for s in lines)
    history = run(3)  # another schedule: a new run
    assert any("starts over" in s for s in lines) and [e["epoch"] for e in history] == [0, 1, 2, 3]
