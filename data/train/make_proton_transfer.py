#!/usr/bin/env python
"""Geometries (no labels) of concerted proton transfer in cyclic water trimers.

Shared-proton geometries are what near-equilibrium training sets lack: a correction fitted to 1-3-water
minima inherits its base's error there (HSE06 itself is 0.20 eV/Å off CCSD along deepks-kit's hexamer-ring
proton-transfer path; README "CCSD(T) force labels"). This writes the same process at a size that
CCSD(T) labels in seconds: in the BEGDB cyclic trimer minimum (3UUD) every ring hydrogen-bond donor H
moves along its O...O line towards the acceptor, all at once (concerted), with the ring's O...O distances
contracted towards the centre, plus a small random displacement of every atom:

    lambda  fraction of the way from the donor's O-H (the minimum's) to the acceptor's mirror position
            (0.5 = the proton midway); 0.1 ... 0.5 (0.5 ... 0.9 is the same path by symmetry)
    scale   O...O contraction (1.0 = the minimum's ~2.8 Å, 0.88 = ~2.45 Å as at a transfer barrier)

Writes ``data/train/proton_transfer/pt_trimers.xyz`` (15 frames; extended XYZ, ``charge=0 multiplicity=1``,
``lambda=``, ``scale=``, ``seed=``). Deterministic (fixed seed).

    python data/train/make_proton_transfer.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BEGDB = ROOT.parent / "shared" / "data" / "water" / "begdb_water_clusters_kaplan2024" / "clusters"
OUT = Path(__file__).resolve().parent / "proton_transfer"
LAMBDAS = (0.1, 0.2, 0.3, 0.4, 0.5)
SCALES = (1.0, 0.94, 0.88)
NOISE_ANG = 0.03


def ring_donors(atoms) -> list:
    """(donor O, H, acceptor O) of each ring hydrogen bond: the H nearest to another molecule's O."""
    oxygens = [i for i, z in enumerate(atoms.numbers) if z == 8]
    hydrogens = [i for i, z in enumerate(atoms.numbers) if z == 1]
    d = atoms.get_all_distances()
    out = []
    for h in hydrogens:
        near = sorted(oxygens, key=lambda o: d[h, o])
        donor, acceptor = near[0], near[1]
        if d[h, acceptor] < 2.3:
            out.append((donor, h, acceptor))
    return out


def path_frame(atoms, donors: list, lam: float, scale: float, rng) -> ase.Atoms:
    """The minimum with its ring O contracted by ``scale`` about their centre (each molecule moved as a
    rigid body) and each ring H at fraction ``lam`` of the way to its mirror image on the acceptor side."""
    oxygens = [i for i, z in enumerate(atoms.numbers) if z == 8]
    # a molecule: its O and the two H nearest to it (in the minimum)
    molecules = [[o, *np.argsort(atoms.get_distances(o, range(len(atoms))))[1:3]] for o in oxygens]
    pos = atoms.positions.copy()
    centre = pos[oxygens].mean(0)
    for members in molecules:
        pos[members] += (scale - 1.0) * (pos[members[0]] - centre)
    for donor, h, acceptor in donors:
        axis = pos[acceptor] - pos[donor]
        length = np.linalg.norm(axis)
        axis /= length
        along = (pos[h] - pos[donor]) @ axis
        mirror = pos[h] + (length - 2 * along) * axis  # the same O-H distance, from the acceptor
        pos[h] = (1 - lam) * pos[h] + lam * mirror
    frame = atoms.copy()
    frame.positions = pos + rng.normal(scale=NOISE_ANG, size=pos.shape)
    return frame


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, start in (("pt_trimers", "3UUD"),):
        atoms = ase.io.read(BEGDB / f"{start}.xyz")
        donors = ring_donors(atoms)
        if len(donors) != len(atoms) // 3:
            raise SystemExit(f"{start}: found {len(donors)} ring donors, expected one per molecule")
        frames = []
        for scale in SCALES:
            for lam in LAMBDAS:
                frame = path_frame(atoms, donors, lam, scale, rng)
                frame.info = {
                    "name": f"{name}_l{lam:.1f}_s{scale:.2f}",
                    "charge": 0,
                    "multiplicity": 1,
                    "source": f"begdb_water_clusters_kaplan2024/clusters/{start}.xyz, concerted ring proton transfer",
                    "lambda": lam,
                    "scale": scale,
                    "seed": args.seed,
                }
                frames.append(frame)
        ase.io.write(OUT / f"{name}.xyz", frames, format="extxyz")
        print(f"{OUT / name}.xyz: {len(frames)} frames")


if __name__ == "__main__":
    main()
