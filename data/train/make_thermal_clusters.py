#!/usr/bin/env python
"""Geometries (no labels) of thermal water clusters for the PBE -> HSE06 water correction model.

Writes into ``data/train/thermal/``:

  train/thermal_nNN.xyz       GFN2-xTB (tblite) Langevin MD frames of (H2O)n, n = 1..16
  train/liquid_cut_nNN.xyz    clusters of n = 8..16 waters cut from liquid frames of DeePMD data_0..data_2
  heldout/thermal_nNN.xyz     GFN2-xTB MD frames, n = 2..16, from trajectories of their own (own seeds and
                              start structures); never from a training trajectory
  heldout/liquid_cut_nNN.xyz  clusters of n = 12..20 waters cut from the data_3 frames (DeePMD validation system)
  manifest.json               one record per trajectory / liquid cut (start, seed, temperature, CPU s, discards)
  README.md                   provenance, counts, discards and CPU cost per size (made from manifest.json)

Every frame: extended XYZ, atoms ordered O,H,H per molecule, comment line with ``charge=0 multiplicity=1``,
``source=``, ``start=`` and, for MD frames, ``temperature_K=``, ``time_fs=`` (from the start of the MD, the
0.4 ps equilibration included), ``seed=``, ``traj=`` (``xtb_epot_eV`` is the GFN2-xTB energy, provenance only:
not a label).

Deterministic: fixed seeds, one thread (set below, before numpy/tblite load). Rerunnable: a
(split, kind, size) file that exists is skipped and its manifest records are kept; delete a file to redo it.
Bit-identical MD frames need the same tblite/ASE/numpy versions (MD is chaotic).

Run from anywhere (2 cores shared: be nice)::

    nice -n 19 python data/train/make_thermal_clusters.py            # everything
    python data/train/make_thermal_clusters.py --measure             # only ms per MD step for each size
    python data/train/make_thermal_clusters.py --sizes 1-6 --skip-liquid

Needs: ase >= 3.23 and tblite (pip package ``tblite``, its ``tblite.ase`` calculator); the shared water data
folder (``--data``, default ``<repo>/../shared/data/water``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "thermal"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "water"

# ---------------------------------------------------------------- MD settings
TIMESTEP_FS = 0.5
FRICTION_PER_FS = 0.01
EQUIL_STEPS = 800  # 0.4 ps (CPU budget; the thermostat's relaxation time 1/friction is 0.1 ps)
SPACING_STEPS = 200  # 100 fs between saved frames (> O-H, H-bond librations; ~ friction time 1/0.01 fs)
TEMPERATURES_K = (300, 350, 400)
EXTRA_CANDIDATES = 2  # frames tried beyond the target (2 x target + 2 with the wall, which lets a cluster recover;
# without it, n = 1, a run stops after 2 discards in a row)
SEED_BASE = {"train": 30000, "heldout": 40000}  # seed = base + 100 n + trajectory index
# Flat-bottom spherical wall on the O atoms (n >= 2): radius = the start structure's largest O distance from the
# O centroid + WALL_MARGIN; harmonic beyond it. Without it GFN2-xTB dimers (and open trimers/tetramers)
# dissociate within 0.5 ps at 300-400 K (friction 0.01/fs), leaving almost no frames.
WALL_MARGIN = 0.5  # Å
WALL_K = 2.0  # eV/Å^2 (excursion beyond the wall ~ sqrt(kT/k) ~ 0.13 Å at 400 K)

BEGDB = "begdb_water_clusters_kaplan2024/clusters/"
W27 = "water27_gmtkn55_kaplan2024/neutral/"
WDB = "wdbase_ttm21f_minima_qcuncertainty/"
CUT = "liquid_water_deepmd_kit_example/cut_clusters/"
CUT0 = CUT + "data_0_set.000_frame000_c10_"
CUT1 = CUT + "data_1_set.000_frame020_c50_"
CUT2 = CUT + "data_2_set.000_frame010_c09_"
CUT3 = CUT + "data_3_set.000_frame030_c37_"


def T(path, frames):
    """One trajectory: start structure (shared-data path, relative), frames to keep. A start with more
    waters than the size is cut: the n molecules whose O is nearest to the O of the central molecule
    (the one nearest to the O centroid; for the liquid cut clusters, their centre molecule, listed first)."""
    return {"start": path, "frames": frames}


# Sizes 1-6: 3 training trajectories x 4 frames, 2 held-out x 2. Sizes 7-12: 2 x 3 and 1 x 3.
# Sizes 13-16: 1 x 4 and 1 x 2 (CPU budget: ~50 ms per MD step at n = 16 on one core).
# Held-out starts: BEGDB minima (already the held-out set of the shipped model), WATER27's dodecahedron
# (H2O)20 and the data_3 (DeePMD validation) liquid cut; training starts: WDBase/WATER27 minima and
# data_0..2 liquid cuts (BEGDB 9S4DA and 10PP2 for n = 9, 10, where nothing else exists).
PLAN = {
    1: {"train": [T(BEGDB + "H2O.xyz", 4), T(W27 + "H2O.xyz", 4), T(CUT0 + "n04.xyz", 4)], "heldout": []},
    2: {
        "train": [T(W27 + "H2O2.xyz", 4), T(CUT0 + "n04.xyz", 4), T(CUT1 + "n04.xyz", 4)],
        "heldout": [T(BEGDB + "2Cs.xyz", 2), T(CUT3 + "n04.xyz", 2)],
    },
    3: {
        "train": [T(WDB + "W3_0000.xyz", 4), T(WDB + "W3_0001.xyz", 4), T(W27 + "H2O3.xyz", 4)],
        "heldout": [T(BEGDB + "3UUD.xyz", 2), T(BEGDB + "3UUU.xyz", 2)],
    },
    4: {
        "train": [T(WDB + "W4_0000.xyz", 4), T(WDB + "W4_0001.xyz", 4), T(W27 + "H2O4.xyz", 4)],
        "heldout": [T(BEGDB + "4S4.xyz", 2), T(BEGDB + "4Py.xyz", 2)],
    },
    5: {
        "train": [T(WDB + "W5_0000.xyz", 4), T(WDB + "W5_0001.xyz", 4), T(W27 + "H2O5.xyz", 4)],
        "heldout": [T(BEGDB + "5CYC.xyz", 2), T(BEGDB + "5FRA.xyz", 2)],
    },
    6: {
        "train": [T(WDB + "W6_0000.xyz", 4), T(W27 + "H2O6.xyz", 4), T(W27 + "H2O6c2.xyz", 4)],
        "heldout": [T(BEGDB + "6CA.xyz", 2), T(BEGDB + "6BK1.xyz", 2)],
    },
    7: {"train": [T(WDB + "W7_0000.xyz", 3), T(WDB + "W7_0001.xyz", 3)], "heldout": [T(BEGDB + "7PR1.xyz", 3)]},
    8: {"train": [T(WDB + "W8_0000.xyz", 3), T(W27 + "H2O8d2d.xyz", 3)], "heldout": [T(BEGDB + "8S4.xyz", 3)]},
    9: {"train": [T(BEGDB + "9S4DA.xyz", 3), T(W27 + "H2O20fc.xyz", 3)], "heldout": [T(BEGDB + "9D2dDD.xyz", 3)]},
    10: {"train": [T(BEGDB + "10PP2.xyz", 3), T(W27 + "H2O20es.xyz", 3)], "heldout": [T(BEGDB + "10PP1.xyz", 3)]},
    11: {"train": [T(W27 + "H2O20fs.xyz", 3), T(CUT1 + "n16.xyz", 3)], "heldout": [T(W27 + "H2O20.xyz", 3)]},
    12: {"train": [T(CUT0 + "n12.xyz", 3), T(W27 + "H2O20fc.xyz", 3)], "heldout": [T(CUT3 + "n12.xyz", 3)]},
    13: {"train": [T(W27 + "H2O20es.xyz", 4)], "heldout": [T(W27 + "H2O20.xyz", 2)]},
    14: {"train": [T(CUT2 + "n16.xyz", 4)], "heldout": [T(CUT3 + "n20.xyz", 2)]},
    15: {"train": [T(W27 + "H2O20fs.xyz", 4)], "heldout": [T(W27 + "H2O20.xyz", 2)]},
    16: {"train": [T(CUT0 + "n16.xyz", 4)], "heldout": [T(CUT3 + "n16.xyz", 2)]},
}

# ---------------------------------------------------------------- liquid cut settings
LIQ = "liquid_water_deepmd_kit_example/"
LIQUID = {
    "train": {
        "frames": [
            "data_0_set.000_frame000",
            "data_0_set.000_frame040",
            "data_1_set.000_frame020",
            "data_1_set.001_frame060",
            "data_2_set.000_frame010",
            "data_2_set.000_frame070",
        ],
        "sizes": list(range(8, 17)),
        "count": 30,
        "seed": 20250711,
    },
    "heldout": {
        "frames": ["data_3_set.000_frame030", "data_3_set.000_frame079"],
        "sizes": list(range(12, 21)),
        "count": 12,
        "seed": 20250712,
    },
}

# ---------------------------------------------------------------- frame checks
OO_CONTACT = 3.5  # Å: an O with no other O this close is a dissociated molecule
OH_MAX = 1.3  # Å: longer intramolecular O-H = broken monomer
MIN_DIST = 0.5  # Å, as deepks_es.structures.check_frame


def water_order(atoms, cell=None):
    """Indices reordering ``atoms`` to O,H,H per molecule (each H to its nearest O, minimum image if ``cell``)."""
    sym = np.array(atoms.get_chemical_symbols())
    o_idx, h_idx = np.where(sym == "O")[0], np.where(sym == "H")[0]
    if len(o_idx) + len(h_idx) != len(sym) or len(h_idx) != 2 * len(o_idx):
        raise ValueError(f"not (H2O)n: {atoms.get_chemical_formula()}")
    d = atoms.positions[h_idx][:, None, :] - atoms.positions[o_idx][None, :, :]
    if cell is not None:
        d -= cell * np.round(d / cell)
    owner = np.argmin(np.linalg.norm(d, axis=2), axis=1)
    order = []
    for k, o in enumerate(o_idx):
        hs = h_idx[owner == k]
        if len(hs) != 2:
            raise ValueError(f"O {o} gets {len(hs)} H")
        order += [o, *hs]
    return np.array(order)


def problems(pos, n_water):
    """Reasons to discard a frame (O,H,H order): too close atoms, broken monomer, dissociated cluster."""
    pos = np.asarray(pos).reshape(n_water, 3, 3)
    out = []
    flat = pos.reshape(-1, 3)
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=2) + np.eye(len(flat)) * 1e9
    if dist.min() < MIN_DIST:
        out.append("atoms_closer_than_0.5A")
    o = pos[:, 0]
    oh = np.linalg.norm(pos[:, 1:] - o[:, None], axis=2)  # (n, 2) own O-H
    if oh.max() > OH_MAX:
        out.append("broken_monomer_OH>1.3A")
    h = pos[:, 1:].reshape(-1, 3)
    h_o = np.linalg.norm(h[:, None] - o[None], axis=2)  # (2n, n)
    if (np.argmin(h_o, axis=1) != np.repeat(np.arange(n_water), 2)).any():
        out.append("H_nearer_to_another_O")
    if n_water >= 2:
        oo = np.linalg.norm(o[:, None] - o[None], axis=2) + np.eye(n_water) * 1e9
        if (oo.min(axis=1) > OO_CONTACT).any():
            out.append("isolated_molecule_OO>3.5A")
        else:  # also catch a split into two sub-clusters
            seen, todo = {0}, [0]
            while todo:
                i = todo.pop()
                for j in np.where(oo[i] <= OO_CONTACT)[0]:
                    if j not in seen:
                        seen.add(int(j))
                        todo.append(int(j))
            if len(seen) < n_water:
                out.append("cluster_split_OO>3.5A")
    return out


# ---------------------------------------------------------------- structures
def read_start(data: Path, rel: str, n: int):
    """Start structure of ``n`` waters from shared-data file ``rel``: reordered O,H,H, cut if bigger, centred."""
    import ase.io

    atoms = ase.io.read(data / rel)
    atoms = atoms[water_order(atoms)]
    if len(atoms) // 3 > n:  # the liquid cut clusters list their centre molecule first
        atoms = _cut(atoms, n, 0 if "cut_clusters/" in rel else central_molecule(atoms))
    if len(atoms) // 3 != n:
        raise ValueError(f"{rel} has {len(atoms) // 3} waters, need {n}")
    atoms.positions -= atoms.positions.mean(axis=0)
    return atoms


def central_molecule(atoms):
    o = atoms.positions[::3]
    return int(np.argmin(np.linalg.norm(o - o.mean(axis=0), axis=1)))


def cut_nearest(atoms, n, centre, cell=None):
    """The n whole molecules (O,H,H order) whose O is nearest the centre's O; unwrapped around it if ``cell``."""
    pos = atoms.positions.reshape(-1, 3, 3).copy()
    d = pos[:, 0] - pos[centre, 0]
    if cell is not None:
        d -= cell * np.round(d / cell)
    r = np.linalg.norm(d, axis=1)
    pick = np.argsort(r, kind="stable")[:n]
    pick = np.array([centre] + [int(i) for i in pick if i != centre][: n - 1], dtype=int)
    if cell is not None:
        o_new = pos[centre, 0] + d  # unwrapped O around the centre
        hd = pos[:, 1:] - pos[:, :1]
        hd -= cell * np.round(hd / cell)
        pos = np.concatenate([o_new[:, None], o_new[:, None] + hd], axis=1)
    from ase import Atoms

    sel = pos[pick].reshape(-1, 3)
    return Atoms("OH2" * n, positions=sel), pick, float(r[pick].max())


def _cut(atoms, n, centre, cell=None):
    return cut_nearest(atoms, n, centre, cell)[0]


def clean(symbols, positions, info):
    from ase import Atoms

    a = Atoms(symbols, positions=positions, pbc=False)
    a.info.update(info)
    return a


# ---------------------------------------------------------------- MD
def xtb_with_wall(radius=None, k=WALL_K):
    """tblite's GFN2-xTB ASE calculator (verbosity 0), plus, if ``radius``, a flat-bottom spherical wall on the
    O atoms: E_wall = k/2 sum_O max(0, |r_O - c| - radius)^2, c = O centroid (zero inside the sphere; net force
    zero, the centroid moving with the O atoms). ``results["xtb_energy"]`` keeps the GFN2-xTB energy alone;
    ``wall_active``/``wall_calls`` count the evaluations where the wall acted."""
    from tblite.ase import TBLite

    class WalledTBLite(TBLite):
        def calculate(self, atoms=None, properties=None, system_changes=None):
            from ase.calculators.calculator import all_changes

            super().calculate(atoms, properties, all_changes if system_changes is None else system_changes)
            self.results["xtb_energy"] = self.results["energy"]
            if radius is None:
                return
            pos = self.atoms.positions
            o = np.where(self.atoms.numbers == 8)[0]
            d = pos[o] - pos[o].mean(axis=0)
            r = np.linalg.norm(d, axis=1)
            ex = np.clip(r - radius, 0.0, None)
            self.wall_calls += 1
            if ex.any():
                self.wall_active += 1
                f_o = -k * (ex / np.maximum(r, 1e-12))[:, None] * d
                forces = self.results["forces"].copy()
                forces[o] += f_o - f_o.mean(axis=0)
                self.results["forces"] = forces
                self.results["energy"] = self.results["energy"] + 0.5 * k * float((ex**2).sum())
                self.results["free_energy"] = self.results["energy"]

    calc = WalledTBLite(method="GFN2-xTB", verbosity=0)
    calc.wall_radius, calc.wall_active, calc.wall_calls = radius, 0, 0
    return calc


def run_trajectory(start, n, split, k, spec, data_rel):
    """Langevin MD of one trajectory; returns (kept Atoms list, record)."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md import velocitydistribution as vd

    seed = SEED_BASE[split] + 100 * n + k
    rng = np.random.default_rng(seed)
    temp = int(rng.choice(TEMPERATURES_K))
    atoms = start.copy()
    radius = None
    if n >= 2:  # small clusters evaporate within 0.5 ps at 300-400 K without the wall
        o = atoms.positions[::3]
        radius = float(np.linalg.norm(o - o.mean(axis=0), axis=1).max()) + WALL_MARGIN
    atoms.calc = calc = xtb_with_wall(radius)
    atoms.set_constraint(FixCom())
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, temperature_K=temp, rng=rng)
    else:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temp, rng=rng)
    vd.Stationary(atoms)
    if n > 1:
        vd.ZeroRotation(atoms)
    dyn = Langevin(
        atoms, TIMESTEP_FS * units.fs, temperature_K=temp, friction=FRICTION_PER_FS / units.fs, fixcm=False, rng=rng
    )
    t0 = time.process_time()
    dyn.run(EQUIL_STEPS)
    kept, discards, tried, in_a_row = [], [], 0, 0
    want = spec["frames"]
    traj = f"{split}_n{n:02d}_t{k}"
    max_tried = 2 * want + EXTRA_CANDIDATES if radius else want + EXTRA_CANDIDATES
    while len(kept) < want and tried < max_tried and (radius or in_a_row < 2):
        dyn.run(SPACING_STEPS)
        tried += 1
        step = EQUIL_STEPS + tried * SPACING_STEPS
        bad = problems(atoms.positions, n)
        if bad:
            discards.append({"time_fs": step * TIMESTEP_FS, "why": bad})
            in_a_row += 1
            continue
        in_a_row = 0
        kept.append(
            clean(
                atoms.get_chemical_symbols(),
                atoms.positions - atoms.positions.mean(axis=0),
                {
                    "name": f"thermal_{traj}_f{len(kept)}",
                    "n_water": n,
                    "charge": 0,
                    "multiplicity": 1,
                    "units": "Angstrom",
                    "source": "GFN2-xTB_Langevin_MD",
                    "start": data_rel,
                    "traj": traj,
                    "temperature_K": temp,
                    "time_fs": step * TIMESTEP_FS,
                    "seed": seed,
                    "T_inst_K": round(float(atoms.get_temperature()), 1),
                    "xtb_epot_eV": round(float(calc.results["xtb_energy"]), 5),
                    **({"wall_radius_A": round(radius, 3)} if radius else {}),
                },
            )
        )
    cpu = time.process_time() - t0
    steps = EQUIL_STEPS + tried * SPACING_STEPS
    rec = {
        "kind": "thermal",
        "split": split,
        "n": n,
        "traj": traj,
        "start": data_rel,
        "seed": seed,
        "temperature_K": temp,
        "frames": len(kept),
        "wanted": want,
        "steps": steps,
        "cpu_s": round(cpu, 1),
        "ms_per_step": round(1000 * cpu / steps, 2),
        "discarded": discards,
        "wall_radius_A": round(radius, 3) if radius else None,
        "wall_active_frac": round(calc.wall_active / max(calc.wall_calls, 1), 3) if radius else None,
    }
    return kept, rec


# ---------------------------------------------------------------- liquid cuts
def liquid_cuts(liquid: Path, split: str):
    """(size -> list of Atoms), records; centres drawn with a fixed seed, not the existing cut_clusters centres.
    ``liquid``: the shared set's liquid_water_deepmd_kit_example folder (its periodic_frames/ and
    cut_clusters.csv; the copy in thermal/liquid_water_deepmd_kit_example/ has what the cuts read)."""
    import csv

    import ase.io

    cfg = LIQUID[split]
    used = {}  # system (data_k) -> centres already used by cut_clusters/ (excluded in every frame of it)
    with open(liquid / "cut_clusters.csv") as fh:
        for row in csv.DictReader(fh):
            used.setdefault(row["cut_from_frame"].split("_set")[0], set()).add(int(row["center_water_index"]))
    rng = np.random.default_rng(cfg["seed"])
    sizes = list(cfg["sizes"]) * (cfg["count"] // len(cfg["sizes"]))
    sizes += sorted(rng.choice(cfg["sizes"], cfg["count"] - len(sizes), replace=False).tolist())
    frames = {}
    out, recs = {}, []
    for j, n in enumerate(sizes):
        fname = cfg["frames"][j % len(cfg["frames"])]
        if fname not in frames:
            per = ase.io.read(liquid / "periodic_frames" / f"{fname}.extxyz")
            cell = np.diag(per.cell.array)
            if not np.allclose(per.cell.array, np.diag(cell)):
                raise ValueError(f"{fname}: box not orthorhombic")
            frames[fname] = {"atoms": per[water_order(per, cell)], "cell": cell, "taken": set()}
        fr = frames[fname]
        system = fname.split("_set")[0]
        free = [c for c in range(len(fr["atoms"]) // 3) if c not in used.get(system, set()) | fr["taken"]]
        centre = int(rng.choice(free))
        fr["taken"].add(centre)
        atoms, pick, rmax = cut_nearest(fr["atoms"], n, centre, fr["cell"])
        # the water_order index of the centre is the O index in the DeePMD frame (O atoms come first there)
        pos = atoms.positions - atoms.positions.mean(axis=0)
        # a surface molecule of a liquid cut may have no other O within 3.5 A (kept, as in cut_clusters/)
        bad = [p for p in problems(pos, n) if "OO>" not in p]
        if bad:
            raise ValueError(f"{fname} centre {centre} n={n}: {bad}")
        o = pos.reshape(n, 3, 3)[:, 0]
        oo_full = np.linalg.norm(o[:, None] - o[None], axis=2) + np.eye(n) * 1e9
        oo = oo_full[np.triu_indices(n, 1)]
        info = {
            "name": f"liquid_cut_n{n:02d}_{fname}_c{centre:02d}",
            "n_water": n,
            "charge": 0,
            "multiplicity": 1,
            "units": "Angstrom",
            "source": "DeePMD-kit_examples_water_liquid_cut",
            "cut_from": fname,
            "center_water": centre,
            "seed": cfg["seed"],
            "max_OO_from_center_A": round(rmax, 3),
        }
        out.setdefault(n, []).append(clean(atoms.get_chemical_symbols(), pos, info))
        recs.append(
            {
                "kind": "liquid_cut",
                "split": split,
                "n": n,
                "cut_from": fname,
                "center_water": centre,
                "seed": cfg["seed"],
                "max_OO_from_center_A": round(rmax, 3),
                "n_OO_lt_3.0A": int((oo < 3.0).sum()),
                "min_OO_A": round(float(oo.min()), 3),
                "n_without_O_within_3.5A": int((oo_full.min(axis=1) > OO_CONTACT).sum()),
            }
        )
    return out, recs


# ---------------------------------------------------------------- bookkeeping
def load_manifest():
    path = OUT / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else []


def save_manifest(recs):
    key = {"thermal": 0, "liquid_cut": 1}
    recs = sorted(
        recs,
        key=lambda r: (
            key[r["kind"]],
            r["split"],
            r["n"],
            r.get("traj", ""),
            r.get("cut_from", ""),
            r.get("center_water", 0),
        ),
    )
    (OUT / "manifest.json").write_text(json.dumps(recs, indent=1) + "\n")
    return recs


def write_frames(path: Path, frames):
    import ase.io

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    ase.io.write(tmp, frames, format="extxyz")
    tmp.replace(path)


def versions():
    import ase

    out = {"ase": ase.__version__, "numpy": np.__version__}
    try:
        from importlib.metadata import version

        out["tblite"] = version("tblite")
    except Exception:  # noqa: BLE001
        pass
    try:
        import tblite.library

        out["tblite_library"] = ".".join(map(str, tblite.library.get_version()))
    except Exception:  # noqa: BLE001
        pass
    return out


def count_file(path: Path):
    if not path.exists():
        return 0, 0
    import ase.io

    frames = ase.io.read(path, index=":")
    return len(frames), sum(len(a) for a in frames)


def wall_txt(r):
    return "-" if r.get("wall_radius_A") is None else f"{r['wall_radius_A']:.2f} / {100 * r['wall_active_frac']:.0f}%"


def write_readme(recs, data: Path):
    vers = versions()
    lines = [
        "# Thermal and liquid-cut water clusters (geometries only)",
        "",
        "Made by `data/train/make_thermal_clusters.py` (deterministic, rerunnable; per-trajectory records in",
        "`manifest.json`). Geometries only - reference labels come later, e.g.",
        "`deepks-es label data/train/thermal/train --method hse06 ...`.",
        "Every frame: extended XYZ, atoms O,H,H per molecule, `charge=0 multiplicity=1`, provenance keys",
        "(`source`, `start`/`cut_from`, `temperature_K`, `time_fs`, `seed`, `traj`); `xtb_epot_eV` is the GFN2-xTB",
        "energy of the frame (provenance only, not a reference label). Shared data paths are relative to",
        "`../shared/data/water/` (the `shared/` folder next to the repository; see each folder's SOURCE.txt).",
        "",
        "## Thermal MD clusters (`*/thermal_nNN.xyz`)",
        "",
        f"GFN2-xTB via tblite {vers.get('tblite', '?')} (library {vers.get('tblite_library', '?')}; "
        "`tblite.ase.TBLite`, method GFN2-xTB, default accuracy 1.0 and electronic temperature 300 K, verbosity 0), "
        f"ASE {vers['ase']} `Langevin` (flexible monomers, timestep {TIMESTEP_FS} fs, friction {FRICTION_PER_FS}/fs, "
        f"`FixCom` constraint instead of the deprecated `fixcm`), numpy {vers['numpy']}, one thread. Per trajectory: "
        f"seed = {SEED_BASE['train']} (train) or {SEED_BASE['heldout']} (held-out) + 100 n + trajectory index; "
        f"temperature drawn from {{{', '.join(map(str, TEMPERATURES_K))}}} K with that seed; Maxwell-Boltzmann "
        f"velocities (centre-of-mass motion and rotation removed); {EQUIL_STEPS * TIMESTEP_FS / 1000:.1f} ps "
        f"equilibration, then a frame every {SPACING_STEPS * TIMESTEP_FS:.0f} fs. A frame is discarded when a "
        f"molecule's O has no other O within {OO_CONTACT} A or the O-O graph (3.5 A) splits (n >= 2), an O-H exceeds "
        f"{OH_MAX} A, an H is nearer to another O, or two atoms are closer than {MIN_DIST} A; then more frames are "
        f"tried, at most 2 x target + {EXTRA_CANDIDATES} per trajectory. For n >= 2 a flat-bottom spherical wall acts "
        "on the O atoms (zero inside the radius = the start structure's largest O distance from the O centroid + "
        f"{WALL_MARGIN} A, harmonic k = {WALL_K} eV/A^2 beyond it; net force zero), as is usual in cluster MD (cf. "
        "xtb/CREST wall potentials): without it GFN2-xTB dimers, open trimers and tetramers evaporate within 0.5 ps "
        "at 300-400 K. The table gives the radius and the fraction of MD steps in which the wall acted. Start "
        "structures bigger than the size are cut: the n molecules whose O is nearest to the O of the central "
        "molecule (nearest to the O centroid; for the liquid cut clusters, their centre molecule), kept whole. "
        "Held-out trajectories are separate runs (own seeds, own start structures except n = 13/15, which share "
        "WATER27's (H2O)20 dodecahedron with n = 11 held-out, never a training one).",
        "",
        "| n | split | traj | start (shared data) | T (K) | seed | frames | discarded | wall R (A) / active | MD steps "
        "| CPU s | ms/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    th = [r for r in recs if r["kind"] == "thermal"]
    for r in th:
        disc = "; ".join(f"{d['time_fs']:.0f} fs: {','.join(d['why'])}" for d in r["discarded"]) or "0"
        lines.append(
            f"| {r['n']} | {r['split']} | {r['traj']} | `{r['start']}` | {r['temperature_K']} | {r['seed']} | "
            f"{r['frames']}/{r['wanted']} | {disc} | {wall_txt(r)} | {r['steps']} | {r['cpu_s']} | "
            f"{r['ms_per_step']} |"
        )
    lines += [
        "",
        "Per size (thermal):",
        "",
        "| n | train frames | held-out frames | trajectories (train/held-out) | discarded | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    tot = {"train": 0, "heldout": 0, "cpu": 0.0, "disc": 0}
    for n in sorted({r["n"] for r in th}):
        rs = [r for r in th if r["n"] == n]
        tr = sum(r["frames"] for r in rs if r["split"] == "train")
        ho = sum(r["frames"] for r in rs if r["split"] == "heldout")
        nd = sum(len(r["discarded"]) for r in rs)
        cpu = sum(r["cpu_s"] for r in rs)
        tot["train"] += tr
        tot["heldout"] += ho
        tot["cpu"] += cpu
        tot["disc"] += nd
        ntr = sum(r["split"] == "train" for r in rs)
        lines.append(f"| {n} | {tr} | {ho} | {ntr}/{len(rs) - ntr} | {nd} | {cpu:.0f} |")
    lines.append(f"| all | {tot['train']} | {tot['heldout']} | | {tot['disc']} | {tot['cpu']:.0f} |")
    lq = [r for r in recs if r["kind"] == "liquid_cut"]
    lines += [
        "",
        "## Liquid cut clusters (`*/liquid_cut_nNN.xyz`)",
        "",
        "From the 8 periodic 64-water frames of `liquid_water_deepmd_kit_example/periodic_frames/` (DeePMD-kit "
        "example water data; level of theory not stated there). As for the existing `cut_clusters/` of that folder: "
        "each H to its nearest O (minimum image; every O gets 2 H), the n waters whose O is nearest (minimum image) "
        "to the centre O taken whole, unwrapped around the centre and re-centred at the centroid. Centres drawn with "
        "numpy "
        f"`default_rng({LIQUID['train']['seed']})` (train: frames of data_0, data_1, data_2, n = 8-16) and "
        f"`default_rng({LIQUID['heldout']['seed']})` (held-out: the two data_3 frames only - DeePMD's validation "
        "system -, n = 12-20), without repeats in a frame and never the centre used in `cut_clusters.csv` for the "
        "same data_k system (10, 50, 9, 37). The sizes cycle through the range, the remainder drawn with the seed; "
        "frames cycle through the list. Centre index = water index = O index in the DeePMD frame.",
        "",
        "Unlike the MD frames, a liquid cut may keep a surface molecule with no other O within 3.5 A (as in "
        "`cut_clusters/`); the last column counts them. Every cut has intact monomers and atoms >= 0.5 A apart.",
        "",
        "| split | n | cut from | centre | max O-O from centre (A) | O-O pairs < 3.0 A | min O-O (A) | "
        "molecules without O within 3.5 A |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lq:
        lines.append(
            f"| {r['split']} | {r['n']} | {r['cut_from']} | {r['center_water']} | {r['max_OO_from_center_A']} | "
            f"{r['n_OO_lt_3.0A']} | {r['min_OO_A']} | {r['n_without_O_within_3.5A']} |"
        )
    lines += [
        "",
        "## Sources of the start structures (see each folder's SOURCE.txt for licences and citations)",
        "",
        "- `begdb_water_clusters_kaplan2024/clusters/`: BEGDB minima (Temelso, Archer, Shields, J. Phys. Chem. A 115,"
        " 12034 (2011)) via Kaplan et al. 2024 (github esoteric-ephemera/water_cluster_density_errors, MIT).",
        "- `water27_gmtkn55_kaplan2024/neutral/`: WATER27 (Bryantsev et al., JCTC 5, 1016 (2009); GMTKN55) via the same"
        " repository (MIT). Stored with all O first; reordered O,H,H here.",
        "- `wdbase_ttm21f_minima_qcuncertainty/`: TTM2.1-F minima of the UW water-cluster database via"
        " QCUncertainty/WaterCluster (no licence stated; research use).",
        "- `liquid_water_deepmd_kit_example/`: DeePMD-kit `examples/water/data` (LGPL-3.0) periodic frames and the"
        " `cut_clusters/` made from them. The 8 periodic frames, `cut_clusters.csv` and `SOURCE.txt` are copied"
        " into `thermal/liquid_water_deepmd_kit_example/`: the liquid cuts rebuild from a checkout"
        " (tests/test_data.py rebuilds them).",
        "",
        "## Caveats",
        "",
        "- Frame counts are scaled to a ~15 min single-core budget (GFN2-xTB: ~2 ms per MD step at n = 1, ~40 ms at"
        " n = 16): training 12/6/4 frames per size for n = 1-6/7-12/13-16 (not 12/8/6), held-out 4/3/2 (not 4);"
        " 0.4 ps equilibration. Sizes 13-16 have one training and one held-out trajectory each.",
        "- The flat-bottom wall (start radius + 0.5 A) acted in up to ~60% of the MD steps of some 350-400 K runs, i.e."
        " it holds the outer molecules of those clusters slightly more compact than free xTB MD would (excursions"
        " beyond the radius ~0.1 A). The held-out frames use the same wall, so the split is consistent.",
        "- BEGDB 2Cs (held-out n = 2 start) and WATER27 H2O2 (training n = 2 start) are the same dimer minimum from"
        " two sets; after 0.4 ps at 300-400 K the runs are independent (own seeds). Several starts are different-size"
        " cuts of the same (H2O)20 (training: fc for n = 9, 12; es for 10, 13; fs for 11, 15; held-out: the"
        " dodecahedron for n = 11, 13, 15).",
        "- Liquid cuts from the same periodic frame share molecules (different centres, overlapping shells).",
        "- The GFN2-xTB MD energies (`xtb_epot_eV`) exclude the wall and are not reference labels.",
    ]
    # totals from the files themselves
    files = sorted(OUT.rglob("*.xyz"))
    counts = {f: count_file(f) for f in files}
    lines += ["", "## Files", "", "| file | frames | atoms |", "|---|---|---|"]
    for f, (nf, na) in counts.items():
        lines.append(f"| {f.relative_to(OUT)} | {nf} | {na} |")
    nf = sum(c[0] for c in counts.values())
    na = sum(c[1] for c in counts.values())
    for split in ("train", "heldout"):
        sf = sum(c[0] for f, c in counts.items() if f.parts[-2] == split)
        sa = sum(c[1] for f, c in counts.items() if f.parts[-2] == split)
        lines.append(f"| {split}/ (all) | {sf} | {sa} |")
    lines += [
        f"| **total** | {nf} | {na} |",
        "",
        f"Total: {nf} frames, {na} atoms ({na // 3} water molecules). Thermal MD CPU time {tot['cpu']:.0f} s "
        "(one core).",
        "",
    ]
    (OUT / "README.md").write_text("\n".join(lines))


# ---------------------------------------------------------------- main
def parse_sizes(text):
    out = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        out |= set(range(int(a), int(b or a) + 1))
    return sorted(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared water data folder")
    ap.add_argument("--sizes", default="1-16", help="thermal sizes to make, e.g. 1-6,9 (default 1-16)")
    ap.add_argument("--skip-thermal", action="store_true")
    ap.add_argument("--skip-liquid", action="store_true")
    ap.add_argument("--measure", action="store_true", help="only print ms per MD step of each size (20 steps)")
    args = ap.parse_args(argv)
    data = args.data.resolve()
    sizes = parse_sizes(args.sizes)

    if args.measure:
        from ase import units
        from ase.md.langevin import Langevin
        from tblite.ase import TBLite

        for n in sizes:
            a = read_start(data, PLAN[n]["train"][0]["start"], n)
            a.calc = TBLite(method="GFN2-xTB", verbosity=0)  # without the wall (negligible cost)
            dyn = Langevin(
                a,
                TIMESTEP_FS * units.fs,
                temperature_K=350,
                friction=FRICTION_PER_FS / units.fs,
                fixcm=False,
                rng=np.random.default_rng(0),
            )
            dyn.run(2)
            t0 = time.process_time()
            dyn.run(20)
            print(f"n={n:2d}  {1000 * (time.process_time() - t0) / 20:6.1f} ms/step", flush=True)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    recs = load_manifest()
    if not args.skip_thermal:
        for n in sizes:
            for split in ("train", "heldout"):
                path = OUT / split / f"thermal_n{n:02d}.xyz"
                if not PLAN[n][split] or path.exists():
                    continue
                recs = [r for r in recs if not (r["kind"] == "thermal" and r["split"] == split and r["n"] == n)]
                frames = []
                for k, spec in enumerate(PLAN[n][split]):
                    start = read_start(data, spec["start"], n)
                    kept, rec = run_trajectory(start, n, split, k, spec, spec["start"])
                    frames += kept
                    recs.append(rec)
                    print(
                        f"{rec['traj']}: {rec['start']} T={rec['temperature_K']} K seed={rec['seed']} "
                        f"kept {rec['frames']}/{rec['wanted']} discarded {len(rec['discarded'])} "
                        f"{rec['cpu_s']} s ({rec['ms_per_step']} ms/step)",
                        flush=True,
                    )
                if frames:
                    write_frames(path, frames)
                recs = save_manifest(recs)
    if not args.skip_liquid:
        for split in ("train", "heldout"):
            cfg = LIQUID[split]
            paths = [OUT / split / f"liquid_cut_n{n:02d}.xyz" for n in cfg["sizes"]]
            if all(p.exists() for p in paths):
                continue
            by_size, lrecs = liquid_cuts(data / LIQ, split)  # cheap: always made whole, written where missing
            for n, frames in by_size.items():
                path = OUT / split / f"liquid_cut_n{n:02d}.xyz"
                if not path.exists():
                    write_frames(path, frames)
            recs = [r for r in recs if not (r["kind"] == "liquid_cut" and r["split"] == split)] + lrecs
            recs = save_manifest(recs)
            print(f"liquid cuts {split}: {len(lrecs)} clusters, sizes {sorted(by_size)}", flush=True)
    write_readme(save_manifest(recs), data)


if __name__ == "__main__":
    main()
