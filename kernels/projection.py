"""The contractions that run every SCF cycle, each with a plain reference twin.

Einsum alphabet: r,s AO; a,b atom; n radial shell; m,M magnetic number; x Cartesian.

Inputs shared by all kernels (see :mod:`deepks_es.projector`), lists of block groups, one per l for
``blocks="shell"`` (shapes below) or a single group with nrad -> 1, 2l+1 -> nproj for ``blocks="atom"``
(the full per-atom block); the kernels do not distinguish the two:
    dm         (nao, nao)                      AO density matrix (both spins), symmetric
    ovlp_proj  list over l of (nao, natm, nrad, 2l+1)      <r|alpha^a_{nlm}>
    ipovlp     list over l of (3, nao, natm, nrad, 2l+1)   <nabla r|alpha^a_{nlm}>
    pdm, gpdm  list over l of (natm, nrad, 2l+1, 2l+1)     projected density blocks and dE/dpdm

Formulas (DeePKS, Chen et al., JCTC 17, 170 (2021), Eqs. 4-8):
    pdm^a_{nl,mM} = sum_rs C_{r,anm} dm_rs C_{s,anM}                        (make_pdm)
    v_delta_rs    = sum_{l,a,n,m,M} C_{r,anm} gpdm^a_{nl,mM} C_{s,anM}        (make_v_delta)
    de_b          = 2 sum_{l,r,a,n,m} dC_{r,anm}/dR_b (dm C gpdm)_{r,anm}     (make_de_delta)
with dC_{r,anm}/dR_b = -ipovlp_{r,anm} [r on b] + ipovlp_{r,anm} [a == b].
"""

from __future__ import annotations

import numpy as np
import opt_einsum as oe


def _swap(x):
    """Transpose the last two axes (numpy array or torch tensor)."""
    return x.swapaxes(-1, -2)


def _flat(c):
    """(..., nao, natm, nrad, 2l+1) -> (..., nao, natm * nrad * (2l+1)), a view."""
    return c.reshape(*c.shape[:-3], -1)


def make_pdm(dm, ovlp_proj: list) -> list:
    """Projected density matrix blocks, one GEMM and one batched contraction per l.

    Works on numpy arrays and on torch tensors (differentiable), with optional leading batch
    dimensions (frames) shared by all inputs.

    Args:
        dm: (..., nao, nao) density matrix.
        ovlp_proj: list over l of (..., nao, natm, nrad, 2l+1).

    Returns:
        list over l of (..., natm, nrad, 2l+1, 2l+1).
    """
    return [oe.contract("...ranm,...ranM->...anmM", c, (dm @ _flat(c)).reshape(c.shape)) for c in ovlp_proj]


def make_pdm_reference(dm: np.ndarray, ovlp_proj: list) -> list:
    """Reference twin of :func:`make_pdm`: an explicit loop over atoms and radial shells."""
    pdm = []
    for c in ovlp_proj:
        _, natm, nrad, nm = c.shape
        out = np.zeros((natm, nrad, nm, nm))
        for a in range(natm):
            for n in range(nrad):
                out[a, n] = c[:, a, n, :].T @ dm @ c[:, a, n, :]
        pdm.append(out)
    return pdm


def _c_gpdm(ovlp_proj: list, gpdm: list) -> list:
    """(C gpdm)_{r,anM} per l, shape (..., nao, natm, nrad, 2l+1)."""
    return [oe.contract("...ranm,...anmM->...ranM", c, g) for c, g in zip(ovlp_proj, gpdm)]


def make_v_delta(gpdm: list, ovlp_proj: list):
    """Hamiltonian correction v_delta = d e_delta / d dm from dE/dpdm.

    numpy or torch (differentiable), optional leading batch dimensions.

    Args:
        gpdm: list over l of (..., natm, nrad, 2l+1, 2l+1), d e_delta / d pdm in Eh.
        ovlp_proj: list over l of (..., nao, natm, nrad, 2l+1).

    Returns:
        (..., nao, nao) v_delta in Eh; symmetric when every gpdm block is.
    """
    return sum(_flat(cg) @ _swap(_flat(c)) for c, cg in zip(ovlp_proj, _c_gpdm(ovlp_proj, gpdm)))


def make_v_delta_reference(gpdm: list, ovlp_proj: list) -> np.ndarray:
    """Reference twin of :func:`make_v_delta`: an explicit loop over atoms and radial shells."""
    nao = ovlp_proj[0].shape[0]
    v_delta = np.zeros((nao, nao))
    for c, g in zip(ovlp_proj, gpdm):
        for a in range(c.shape[1]):
            for n in range(c.shape[2]):
                v_delta += c[:, a, n, :] @ g[a, n] @ c[:, a, n, :].T
    return v_delta


def ao_owner(ao_atom, natm: int):
    """(natm, nao) 0/1 matrix, 1 where AO r sits on atom a, from ao_atom (nao,) (numpy or torch)."""
    if isinstance(ao_atom, np.ndarray):
        return (ao_atom[None, :] == np.arange(natm)[:, None]).astype(float)
    import torch

    return (ao_atom[None, :] == torch.arange(natm)[:, None]).to(torch.float64)


def make_de_delta(gpdm: list, dm, ovlp_proj: list, ipovlp: list, ao_atom):
    """Explicit nuclear gradient of e_delta at fixed density matrix (projector and AO centres move).

    numpy or torch (differentiable in gpdm), optional leading batch dimensions.

    Args:
        gpdm: list over l of (..., natm, nrad, 2l+1, 2l+1), d e_delta / d pdm (symmetric blocks), Eh.
        dm: (..., nao, nao) density matrix.
        ovlp_proj: list over l of (..., nao, natm, nrad, 2l+1).
        ipovlp: list over l of (..., 3, nao, natm, nrad, 2l+1), bohr^-1.
        ao_atom: (nao,) int, the atom each AO sits on (the same for every batch entry).

    Returns:
        (..., natm, 3) gradient in Eh/bohr. Memory: one (..., 3, nao, natm) intermediate, no natm^2 tensor.
    """
    natm = ovlp_proj[0].shape[-3]
    owner = ao_owner(ao_atom, natm)
    de = 0
    for ip, cg in zip(ipovlp, _c_gpdm(ovlp_proj, gpdm)):
        t = (dm @ _flat(cg)).reshape(cg.shape)
        x = oe.contract("...xranm,...ranm->...xra", ip, t)  # (..., 3, nao, natm)
        de = de + 2 * _swap(x.sum(-2))  # projector centre a moves
        de = de - 2 * owner @ _swap(x.sum(-1))  # AO centre moves
    return de


def make_de_delta_reference(
    gpdm: list, dm: np.ndarray, ovlp_proj: list, ipovlp: list, ao_atom: np.ndarray
) -> np.ndarray:
    """Reference twin of :func:`make_de_delta`: builds the dense dC/dR_b and contracts it literally."""
    natm = ovlp_proj[0].shape[1]
    de = np.zeros((natm, 3))
    for c, ip, g in zip(ovlp_proj, ipovlp, gpdm):
        for b in range(natm):
            dc = np.zeros_like(ip)  # (3, nao, natm, nrad, nm)
            dc[:, ao_atom == b] -= ip[:, ao_atom == b]
            dc[:, :, b] += ip[:, :, b]
            # d/dR of sum C_r dm_rs C_s G = dC dm C G + C dm dC G, equal by symmetry of dm and G
            de[b] += 2 * np.einsum("xranm,rs,sanM,anmM->x", dc, dm, c, g)
    return de
