"""Training data and losses: the first-order predictions reproduce a DeePKS SCF record, the model-free
force part equals PySCF's base gradient at that density, and every loss term's parameter gradient matches
central finite differences.

Frames: the BEGDB water dimer (data/water/2Cs.xyz) and monomer (H2O.xyz) in STO-3G (small, fast); target
labels are HSE06 in the same basis, so every loss term has a target.
"""

import numpy as np
import pytest
import torch
from conftest import WATER, random_model

from deepks_es import save_model
from deepks_es.dataset import load_frames, make_batches, predict
from deepks_es.engine import key_of
from deepks_es.losses import TERMS, frame_losses, total_loss
from deepks_es.methods import LabelSpec, label_frame
from deepks_es.store import LabelStore
from deepks_es.structures import frame_to_mol, read_frames

BASIS = "sto-3g"


def _store(path, frames, **spec):
    spec = LabelSpec(basis=BASIS, forces=True, save_matrices=True, **spec).validate()
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


@pytest.mark.parametrize("term", TERMS)
def test_loss_gradient_finite_difference(stores, term):
    """d loss / d theta along a random parameter direction vs central differences (h = 1e-5)."""
    frames, _ = load_frames(stores["pbe"], stores["hse06"])
    batches = make_batches(frames, 4)
    model = random_model(seed=5, scale=0.05)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(7)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    weights = {term: 1.0}

    def loss():
        return sum(total_loss(frame_losses(predict(model, b), b, [term], n_virt=1), weights) for b in batches)

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
