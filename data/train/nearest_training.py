"""How close is each held-out structure to the training set (#12)? The nearest reference structure of the same
composition, by interatomic distances.

A structure's fingerprint is the sorted list of its interatomic distances, per element pair (O-O, O-H, H-H);
the distance between two structures of the same composition is the RMS difference of their fingerprints (Å).
It needs no alignment and no atom order, and it is zero only for structures with the same distance
multisets. For scale (measured 2026-12-07): a held-out 300 K thermal frame of 2-10 waters lies 0.10-0.29 Å
from the nearest stage-7 training frame; the same isomer optimised on another surface (a TTM2.1-F minimum of
WDBase against its MP2 counterpart in BEGDB) 0.05-0.09 Å.

    python data/train/nearest_training.py QUERY... [--config data/train/pbe_hse06_water_stage7.yaml]
    python data/train/nearest_training.py QUERY... --reference REF...

QUERY and REF are structure inputs as ``deepks-es label`` reads them (xyz/extxyz files, DeePMD folders);
``--config`` takes the reference from an iterate config's ``frames`` (default: stage 7's, the shipped
model's training structures). Prints one line per query structure: its name, the distance and the nearest
reference structure (a query with no reference of its composition says so).
"""

import argparse
from pathlib import Path

import numpy as np

from deepks_es.config import load_config
from deepks_es.structures import read_frames

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ((8, 8), (8, 1), (1, 1))


def fingerprint(numbers: np.ndarray, positions_ang: np.ndarray) -> np.ndarray:
    """(npair,): the sorted interatomic distances (Å) of each element pair of ``PAIRS``, concatenated."""
    i, j = np.triu_indices(len(numbers), 1)
    dist = np.linalg.norm(positions_ang[i] - positions_ang[j], axis=-1)
    zi, zj = numbers[i], numbers[j]
    return np.concatenate([np.sort(dist[((zi == a) & (zj == b)) | ((zi == b) & (zj == a))]) for a, b in PAIRS])


def index(paths) -> dict:
    """Composition (sorted atomic numbers) -> (names, (n, npair) fingerprints) of every frame of ``paths``."""
    groups = {}
    for frame in read_frames(paths):
        key = tuple(sorted(frame.numbers))
        groups.setdefault(key, []).append((frame.name, fingerprint(frame.numbers, frame.positions_ang)))
    return {key: ([n for n, _ in rows], np.stack([f for _, f in rows])) for key, rows in groups.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="+", help="structures to place (e.g. a held-out set)")
    parser.add_argument("--config", default=str(ROOT / "data" / "train" / "pbe_hse06_water_stage7.yaml"))
    parser.add_argument("--reference", nargs="+", help="reference structures instead of the config's frames")
    args = parser.parse_args(argv)
    reference = index(args.reference or load_config(args.config, "iterate").frames)
    for frame in read_frames(args.query):
        key = tuple(sorted(frame.numbers))
        if key not in reference:
            print(f"{frame.name}: no reference structure of this composition")
            continue
        names, fps = reference[key]
        rms = np.sqrt(np.mean((fps - fingerprint(frame.numbers, frame.positions_ang)) ** 2, axis=1))
        k = int(np.argmin(rms))
        print(f"{frame.name}: {rms[k]:.3f} Å from {names[k]}")


if __name__ == "__main__":
    main()
