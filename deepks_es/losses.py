"""DeePKS-ES training losses (Liang, Liu, Chen, arXiv 2503.24050, Sec. 2.2; DeePKS, Chen et al., JCTC 17,
170 (2021), Eqs. 10-11), each per frame, on the first-order predictions of :func:`deepks_es.dataset.predict`.

    energy       ((E - E_t) / natm)^2                                     Eh^2
    force        mean over atoms and components of (F - F_t)^2             (Eh/bohr)^2
    hamiltonian  ||H - H_t||_F^2 / nao,  H = fock_base + v_delta          Eh^2
    eigenvalue   mean over the k = nocc + n_virt lowest of (eps - eps_t)^2  Eh^2
                 (optionally without the chemical cores, ``skip_core``)
    gap          ((eps_lumo - eps_homo) - gap_t)^2                        Eh^2
    eigenvector  ||C_t^T H C_t - diag(eps_t)||_F^2 / k over the k target orbitals C_t   Eh^2

The eigenvector term asks the target orbitals to be eigenvectors of the corrected Hamiltonian with the
target eigenvalues: it is linear in H, invariant to orbital signs and to rotations inside degenerate
target levels, and needs no derivative of an eigenvector. Eigenvalues come from ``eigvalsh``, whose
derivative is well defined for degenerate levels as long as the loss is symmetric in them.

The default weights (:class:`deepks_es.settings.LossSettings`) are the DeePKS-ES paper's (energy 1, force 1,
Hamiltonian 0.005, eigenvectors 0.1, eigenvalues 0.01) in these atomic units; the gap term is off by default.
"""

from __future__ import annotations

import torch

TERMS = ("energy", "force", "hamiltonian", "eigenvalue", "gap", "eigenvector")
#: target fields each term needs
NEEDS = {
    "energy": ("e_tot",),
    "force": ("forces",),
    "hamiltonian": ("fock",),
    "eigenvalue": ("mo_energy",),
    "gap": ("mo_energy",),
    "eigenvector": ("mo_energy", "mo_coeff"),
}
#: predicted fields (:func:`deepks_es.dataset.predict`) each term needs
PREDICTS = {
    "energy": ("e_tot",),
    "force": ("forces",),
    "hamiltonian": ("fock",),
    "eigenvalue": ("mo_energy",),
    "gap": ("mo_energy",),
    "eigenvector": ("fock",),
}


def predictions_for(terms) -> tuple:
    """The predictions the loss ``terms`` need (an energy-only fit needs ``e_tot`` alone)."""
    return tuple(sorted({f for name in terms for f in PREDICTS[name]}))


def homo_lumo_gap(mo_energy: torch.Tensor, nocc: int) -> torch.Tensor:
    """(B,) gap eps[nocc] - eps[nocc - 1] (Eh) of ascending orbital energies (B, nmo)."""
    return mo_energy[:, nocc] - mo_energy[:, nocc - 1]


def frame_losses(pred: dict, batch, terms, n_virt: int = 1, skip_core: bool = False) -> dict:
    """Per-frame loss terms, each a (B,) tensor; a term whose target the batch lacks is left out.

    Args:
        pred: :func:`deepks_es.dataset.predict` output.
        batch: the :class:`deepks_es.dataset.Batch`.
        terms: names from ``TERMS`` to compute.
        n_virt: virtual orbitals (from the LUMO up) in the eigenvalue and eigenvector terms.
        skip_core: leave the chemical-core orbitals (O 1s for water; ``batch.ncore`` of them) out of the
            eigenvalue and eigenvector terms.
    """
    t = batch.target
    natm = len(batch.numbers)
    k = batch.nocc + n_virt
    c0 = batch.ncore if skip_core else 0
    out = {}
    for name in terms:
        if not all(f in t for f in NEEDS[name]):
            continue
        if name == "energy":
            out[name] = ((pred["e_tot"] - t["e_tot"]) / natm) ** 2
        elif name == "force":
            out[name] = ((pred["forces"] - t["forces"]) ** 2).mean((-1, -2))
        elif name == "hamiltonian":
            out[name] = ((pred["fock"] - t["fock"]) ** 2).sum((-1, -2)) / pred["fock"].shape[-1]
        elif name == "eigenvalue":
            out[name] = ((pred["mo_energy"][:, c0:k] - t["mo_energy"][:, c0:k]) ** 2).mean(-1)
        elif name == "gap":
            out[name] = (homo_lumo_gap(pred["mo_energy"], batch.nocc) - homo_lumo_gap(t["mo_energy"], batch.nocc)) ** 2
        elif name == "eigenvector":
            c = t["mo_coeff"][:, :, c0:k]
            h_mo = c.transpose(-1, -2) @ pred["fock"] @ c
            out[name] = ((h_mo - torch.diag_embed(t["mo_energy"][:, c0:k])) ** 2).sum((-1, -2)) / (k - c0)
    return out


def total_loss(losses: dict, weights: dict) -> torch.Tensor:
    """sum_term weight * sum over frames of the term (a scalar); divide by the frame count for a mean."""
    return sum(weights[name] * value.sum() for name, value in losses.items() if weights.get(name, 0) > 0)
