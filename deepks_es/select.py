"""Active-learning selection (``deepks-es select``): which candidate frames to label next.

The DP-GEN convention (Zhang et al., Comput. Phys. Commun. 253, 107206 (2020)): a committee of models
labels every candidate; the model deviation of a frame is the largest per-atom force deviation
``max_devi_f`` = max_i sqrt(<|F_m,i - <F_i>|^2>_m) (computed by committee labelling,
:func:`deepks_es.methods._committee`). Frames below ``trust_lo`` are already described well, frames at or
above ``trust_hi`` are likely unphysical or far outside the training data; the candidates in between are
ranked by deviation (largest first), near-duplicates are removed, and at most ``max_frames`` are kept.

Near-duplicates: two frames of one composition whose sorted interatomic distances differ by less than
``duplicate_ang`` everywhere (a rotation-, translation- and permutation-invariant comparison); the one
with the larger deviation is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DeePKSInputError
from .output import EV_PER_ANG_PER_AU


@dataclass
class Selection:
    """What :func:`select_frames` decided. Records are label-store records (atomic units); ``devi_ev_ang``
    maps record keys to their ``max_devi_f`` in eV/Å."""

    selected: list
    accurate: int
    candidate: int
    failed: int
    duplicates: int
    devi_ev_ang: dict

    def line(self) -> str:
        return (
            f"accurate (< trust_lo) {self.accurate}, candidates {self.candidate}, failed (>= trust_hi or no "
            f"converged SCF) {self.failed}, near-duplicates removed {self.duplicates}, selected {len(self.selected)}"
        )


def _distances(record) -> np.ndarray:
    pos = np.asarray(record["positions_ang"])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    return np.sort(d[np.triu_indices(len(pos), 1)])


def select_frames(records, trust_lo: float, trust_hi: float, max_frames: int, duplicate_ang: float = 0.02):
    """Choose frames to label next from committee-labelled store records (see the module docstring).

    Args:
        records: store records with ``max_devi_f`` (Eh/bohr), converged or not.
        trust_lo, trust_hi: the trust levels, eV/Å (DP-GEN's units), 0 <= trust_lo < trust_hi.
        max_frames: the most frames to select (>= 1).
        duplicate_ang: near-duplicate threshold on sorted interatomic distances, Å (0 keeps all).

    Returns:
        a :class:`Selection`.

    Raises:
        DeePKSInputError: trust levels or counts out of range, records without a committee deviation.
    """
    if not (0 <= trust_lo < trust_hi) or max_frames < 1 or duplicate_ang < 0:
        raise DeePKSInputError(
            f"need 0 <= --trust-lo < --trust-hi, --max >= 1 and --duplicate-ang >= 0; got {trust_lo}, {trust_hi}, "
            f"{max_frames}, {duplicate_ang}"
        )
    missing = [r["name"] for r in records if not r["error"] and r["max_devi_f"] is None]
    if missing:
        raise DeePKSInputError(
            f"{len(missing)} frames (first: {missing[0]}) have no committee force deviation; label them with "
            "--method deepks --forces and two or more --model files"
        )
    devi = {r["key"]: r["max_devi_f"] * EV_PER_ANG_PER_AU for r in records if r["max_devi_f"] is not None}
    ok = [r for r in records if not r["error"] and r["converged"]]
    accurate = [r for r in ok if devi[r["key"]] < trust_lo]
    candidates = sorted(
        (r for r in ok if trust_lo <= devi[r["key"]] < trust_hi), key=lambda r: (-devi[r["key"]], r["name"])
    )
    selected, duplicates = [], 0
    for rec in candidates:
        if len(selected) == max_frames:
            break
        d = _distances(rec)
        twin = any(
            np.array_equal(np.sort(s["numbers"]), np.sort(rec["numbers"]))
            and np.abs(_distances(s) - d).max() < duplicate_ang
            for s in selected
        )
        if twin:
            duplicates += 1
        else:
            selected.append(rec)
    return Selection(
        selected=selected,
        accurate=len(accurate),
        candidate=len(candidates),
        failed=len(records) - len(accurate) - len(candidates),
        duplicates=duplicates,
        devi_ev_ang=devi,
    )
