"""Every key deepks-es writes, with its type, shape and unit, in one place (as NequIP's ``_keys.py``).

Two rules: a key without a unit in its name is in atomic units (Eh, Eh/bohr, bohr^-1) or unitless; a
value in eV or Å carries the unit in its name (``forces_ev_ang``, ``positions_ang``). The one exception
is the ML-potential convention of extxyz files, ``REF_energy`` (eV) and ``REF_forces`` (eV/Å).
So ``forces`` is always Eh/bohr (= -gradient) and ``forces_ev_ang`` always eV/Å, wherever they appear.

Shapes: natm atoms, nao atomic orbitals, nmo molecular orbitals; ``()`` a scalar.
"""

from __future__ import annotations

# ---- label store records (HDF5, deepks_es.store): atomic units -------------------------------------
#: per-record attributes: name -> (type, meaning)
RECORD_ATTRS = {
    "name": (str, "<file stem> or <file stem>:<frame index>"),
    "source": (str, "the structure file"),
    "charge": (int, "total charge, e"),
    "multiplicity": (int, "2S+1"),
    "converged": (bool, "PySCF's SCF flag after the retry ladder"),
    "cycles": (int, "SCF cycles, all attempts"),
    "error": (str, "why the frame failed; '' when fine"),
}

#: per-record datasets: name -> (dtype, shape, unit); the unit is also the dataset's ``units`` attr
RECORD_DATASETS = {
    "numbers": ("int64", "(natm,)", ""),
    "positions_ang": ("float64", "(natm, 3)", "angstrom"),
    "e_tot": ("float64", "()", "Eh"),  # nan for a failed frame
    "forces": ("float64", "(natm, 3)", "Eh/bohr"),  # = -gradient
    "mo_energy": ("float64", "(nmo,)", "Eh"),
    "mo_occ": ("float64", "(nmo,)", ""),
    "homo": ("float64", "()", "Eh"),
    "lumo": ("float64", "()", "Eh"),
    "gap": ("float64", "()", "Eh"),
    "wall_s": ("float64", "()", "s"),
    # ccsd / ccsd(t): e_tot = e_hf + e_corr (+ e_t)
    "e_hf": ("float64", "()", "Eh"),
    "e_corr": ("float64", "()", "Eh"),  # CCSD correlation energy
    "e_t": ("float64", "()", "Eh"),  # the (T) correction
    # committee spread (deepks with several models; DP-GEN's deviations)
    "e_tot_std": ("float64", "()", "Eh"),
    "force_std": ("float64", "(natm,)", "Eh/bohr"),
    "max_devi_f": ("float64", "()", "Eh/bohr"),
    # matrices (--save-matrices), AO basis
    "dm": ("float64", "(nao, nao)", ""),
    "fock": ("float64", "(nao, nao)", "Eh"),
    "ovlp": ("float64", "(nao, nao)", ""),
    "mo_coeff": ("float64", "(nao, nmo)", ""),
    # --save-response (training base stores): Z of the valence occupied levels' mean and of the LUMO
    # (deepks_es.scf.level_response), AO basis, electrons
    "level_response": ("float64", "(2, nao, nao)", ""),
}
MATRIX_KEYS = ("dm", "fock", "ovlp", "mo_coeff")
#: datasets a store reads only when asked for matrices
LARGE_KEYS = (*MATRIX_KEYS, "level_response")

# ---- deepks-es scf --output x.json: one object per structure ------------------------------------
#: name -> (shape, unit)
SCF_OUTPUT = {
    "name": ("str", ""),
    "source": ("str", ""),
    "symbols": ("(natm,) str", ""),
    "charge": ("()", "e"),
    "multiplicity": ("()", ""),
    "positions_ang": ("(natm, 3)", "angstrom"),
    "e_tot": ("()", "Eh"),
    "e_delta": ("()", "Eh"),
    "forces_ev_ang": ("(natm, 3) or null", "eV/angstrom"),  # = -gradient
    "mo_energy_ev": ("(nmo,)", "eV"),
    "mo_occ": ("(nmo,)", ""),
    "homo_ev": ("()", "eV"),
    "lumo_ev": ("() or null", "eV"),
    "gap_ev": ("() or null", "eV"),
    "converged": ("bool", ""),
    "cycles": ("()", ""),
    "scf_attempts": ("list of [rung, converged, cycles]", ""),
    "wall_s": ("()", "s"),
    "model": ("str", "checkpoint path, or 'none'"),
    "model_sha256": ("str or null", ""),
    "model_trained": ("bool or null", ""),
    "basis": ("str", ""),
    "xc": ("str", ""),
    "density_fit": ("bool", ""),
}

# ---- extxyz (deepks-es scf --output x.extxyz, deepks-es export --format extxyz) --------------------
REF_ENERGY = "REF_energy"  # info, () eV (= e_tot)
REF_FORCES = "REF_forces"  # arrays, (natm, 3) eV/angstrom (= -gradient)
#: the scalars of an scf record written to the extxyz info line besides REF_energy (units as SCF_OUTPUT)
EXTXYZ_SCF_INFO = (
    "name",
    "charge",
    "multiplicity",
    "e_tot",
    "e_delta",
    "homo_ev",
    "lumo_ev",
    "gap_ev",
    "converged",
    "cycles",
    "wall_s",
    "model_sha256",
    "basis",
    "xc",
)

#: committee deviations of an exported frame (deepks-es export; extxyz info, deepmd committee_devi.csv)
COMMITTEE_INFO = {
    "max_devi_f_ev_ang": ("()", "eV/angstrom"),  # max over atoms of the per-atom force deviation (DP-GEN)
    "e_tot_std_ev": ("()", "eV"),  # standard deviation of the committee's energies
}

# ---- trajectories of deepks-es opt / md (extxyz, one frame per step, appended as the run goes) --------
# Each frame has REF_energy (eV) and REF_forces (eV/angstrom) as above, and these info fields:
#: name -> (shape, unit); the md-only ones are marked in TRAJECTORY_MD_INFO
TRAJECTORY_INFO = {
    "step": ("()", ""),  # 0 = the starting structure; a resumed run continues the count
    "e_tot": ("()", "Eh"),
    "e_delta": ("()", "Eh"),
    "fmax_ev_ang": ("()", "eV/angstrom"),  # largest |force| on an atom
    "cycles": ("()", ""),  # SCF cycles of this step, all attempts of the retry ladder
    "converged": ("bool", ""),
    "wall_s": ("()", "s"),  # SCF and gradient of this step
    "charge": ("()", "e"),
    "multiplicity": ("()", ""),
    "model_sha256": ("str", ""),  # 'none' for the plain base functional
    "basis": ("str", ""),
    "xc": ("str", ""),
    "density_fit": ("bool", ""),
    "grid_level": ("()", ""),
}
TRAJECTORY_MD_INFO = {
    "time_fs": ("()", "fs"),
    "e_kin_ev": ("()", "eV"),
    "temperature_k": ("()", "K"),  # from the kinetic energy; ASE's degrees of freedom (3N minus constraints)
}
VELOCITIES_ANG_FS = "velocities_ang_fs"  # arrays (md), (natm, 3) angstrom/fs
