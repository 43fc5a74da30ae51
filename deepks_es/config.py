"""The YAML config of ``deepks-es train`` and ``deepks-es iterate``, validated before any compute.

Every key, its default and meaning (paths are relative to the config file)::

    workdir: run                 # outputs: models, checkpoints, label stores, reports
    target: [hse06.h5]           # label store(s) with the reference labels (one path or a list)
    frames: [train/]             # iterate: the training structures (xyz/extxyz files, DeePMD folders,
                                 #   folders; * patterns allowed); train: optional, keeps only these
    base: pbe.h5                 # train only: base store(s) (pbe, or deepks labelled with base_model)
    base_model: null             # train only: the model a deepks base store was labelled with
    init_model: null             # start from this checkpoint instead of a new model
    model: {kind: mlp, descriptor: power_traces, hidden: [100, 100, 100], activation: silu}
                                 # replaced as a whole when given; the equivariant model:
                                 #   {kind: e3, hidden: "16x0e+8x1o+8x1e+4x2o+8x2e+2x3o+2x3e+2x4e", layers: 2}
                                 #   (its arguments: deepks_es.model.E3Model); checked by building one
    basis: cc-pVDZ
    xc: PBE                      # the base functional
    description: ""
    seeds: [0]                   # one model per seed (train); iterate uses the first
    losses: {energy: 1, force: 1, hamiltonian: 0.005, eigenvalue: 0.01, gap: 0, eigenvector: 0.1,
             n_virt: 1, skip_core: false}
                                 # weights (DeePKS-ES defaults), the virtual orbitals in the eig/vec
                                 # terms, and whether the 1s cores are left out of them
    train: {epochs: 500, lr: 1.0e-3, lr_final: 1.0e-5, batch_size: 16, valid_fraction: 0.1,
            prefit: true, checkpoint_every: 50}
    iterate: {iterations: 2, epochs: [], check_sample: 8, min_convergence: 1.0, retries: 2}
                                 # epochs per iteration (empty: train.epochs each time); a new model is
                                 # accepted when its SCF converges on >= min_convergence of check_sample
                                 # training frames, else it is retrained with half the epochs and lr
    scf: {density_fit: false, grid_level: 3, workers: 1, threads_per_worker: 2}
"""

from __future__ import annotations

import copy
import glob
from pathlib import Path

import yaml

from .errors import DeePKSInputError
from .losses import DEFAULT_WEIGHTS, TERMS

DEFAULTS = {
    "workdir": "run",
    "target": [],
    "frames": [],
    "base": None,
    "base_model": None,
    "init_model": None,
    "model": {"kind": "mlp", "descriptor": "power_traces", "hidden": [100, 100, 100], "activation": "silu"},
    "basis": "cc-pVDZ",
    "xc": "PBE",
    "description": "",
    "seeds": [0],
    "losses": {**DEFAULT_WEIGHTS, "n_virt": 1, "skip_core": False},
    "train": {
        "epochs": 500,
        "lr": 1e-3,
        "lr_final": 1e-5,
        "batch_size": 16,
        "valid_fraction": 0.1,
        "prefit": True,
        "checkpoint_every": 50,
    },
    "iterate": {"iterations": 2, "epochs": [], "check_sample": 8, "min_convergence": 1.0, "retries": 2},
    "scf": {"density_fit": False, "grid_level": 3, "workers": 1, "threads_per_worker": 2},
}
PATH_KEYS = ("workdir", "base_model", "init_model")
LIST_PATH_KEYS = ("target", "frames", "base")


def _merge(defaults: dict, given: dict, where: str) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise DeePKSInputError(f"config: unknown key {where}{key!r}; known: {', '.join(sorted(defaults))}")
        if isinstance(defaults[key], dict) and defaults[key] and key != "model":
            if not isinstance(value, dict):
                raise DeePKSInputError(f"config: {where}{key} must be a mapping, got {value!r}")
            out[key] = _merge(defaults[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _expand(root: Path, pattern: str, key: str) -> list:
    """A path, absolute or relative to the config folder; a pattern with * or ? is expanded (sorted)."""
    if not any(ch in pattern for ch in "*?["):
        return [str((root / pattern).resolve())]
    found = sorted(str(Path(p).resolve()) for p in glob.glob(str(root / pattern)))
    _check(bool(found), f"{key}: pattern {pattern} matches no file")
    return found


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise DeePKSInputError(f"config: {msg}")


def load_config(path, command: str) -> dict:
    """Read, complete with defaults and validate a config for ``command`` ("train" or "iterate").

    Returns:
        the config dict with absolute paths (lists for ``target`` and ``frames``).

    Raises:
        DeePKSInputError: unreadable YAML, unknown keys, wrong types or ranges, missing files, or what the
            command needs missing (naming the key and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise DeePKSInputError(f"config file {path} not found")
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DeePKSInputError(f"config file {path} is not valid YAML: {exc}") from None
    _check(isinstance(given, dict), f"{path} must hold a mapping of keys")
    cfg = _merge(DEFAULTS, given, "")
    root = path.resolve().parent
    for key in LIST_PATH_KEYS:
        if cfg[key] is None:  # base: not given
            continue
        if isinstance(cfg[key], str):
            cfg[key] = [cfg[key]]
        _check(isinstance(cfg[key], list), f"{key} must be a path or a list of paths")
        cfg[key] = [q for p in cfg[key] for q in _expand(root, p, key)]
    for key in PATH_KEYS:
        if cfg[key] is not None:
            cfg[key] = str((root / cfg[key]).resolve())
    _check(bool(cfg["target"]), "target: give the label store(s) with the reference labels")
    for p in cfg["target"] + (cfg["base"] or []) + [cfg[k] for k in ("base_model", "init_model") if cfg[k]]:
        _check(Path(p).exists(), f"{p} does not exist")
    for p in cfg["frames"]:
        _check(Path(p).exists(), f"frames: {p} does not exist")
    if command == "iterate":
        _check(bool(cfg["frames"]), "frames: iterate needs the training structures")
        _check(cfg["base"] is None, "base: iterate computes its own base labels; remove the key")
    else:
        _check(cfg["base"] is not None, "base: train needs a base label store (pbe or deepks, with matrices)")
    weights, train, it, scf = cfg["losses"], cfg["train"], cfg["iterate"], cfg["scf"]
    for term in TERMS:
        _check(isinstance(weights[term], (int, float)) and weights[term] >= 0, f"losses.{term} must be >= 0")
    _check(any(weights[t] > 0 for t in TERMS), "losses: at least one weight must be positive")
    _check(isinstance(weights["n_virt"], int) and weights["n_virt"] >= 1, "losses.n_virt must be an integer >= 1")
    _check(isinstance(weights["skip_core"], bool), "losses.skip_core must be true or false")
    for key in ("epochs", "batch_size", "checkpoint_every"):
        _check(isinstance(train[key], int) and train[key] >= 1, f"train.{key} must be a positive integer")
    _check(0 < float(train["lr_final"]) <= float(train["lr"]), "train: need 0 < lr_final <= lr")
    _check(0 <= float(train["valid_fraction"]) < 1, "train.valid_fraction must be in [0, 1)")
    _check(isinstance(it["iterations"], int) and it["iterations"] >= 1, "iterate.iterations must be >= 1")
    _check(
        isinstance(it["epochs"], list) and all(isinstance(e, int) and e >= 1 for e in it["epochs"]),
        "iterate.epochs must be a list of positive integers (one per iteration)",
    )
    _check(0 <= float(it["min_convergence"]) <= 1, "iterate.min_convergence must be in [0, 1]")
    _check(isinstance(it["check_sample"], int) and it["check_sample"] >= 0, "iterate.check_sample must be >= 0")
    _check(
        isinstance(cfg["seeds"], list) and cfg["seeds"] and all(isinstance(s, int) for s in cfg["seeds"]),
        "seeds must be a non-empty list of integers",
    )
    _check(isinstance(scf["workers"], int) and scf["workers"] >= 1, "scf.workers must be >= 1")
    from .model import MODELS, build_model

    _check(
        isinstance(cfg["model"], dict) and cfg["model"].get("kind", "mlp") in MODELS,
        f"model.kind must be one of {sorted(MODELS)}",
    )
    args = {k: v for k, v in cfg["model"].items() if k != "kind"}
    try:  # the model's own checks (descriptor, hidden, projector, ...), on a throw-away instance
        build_model(cfg["model"].get("kind", "mlp"), elements=[1], **args)
    except DeePKSInputError as exc:
        raise DeePKSInputError(f"config: model: {exc}") from None
    except TypeError as exc:
        raise DeePKSInputError(f"config: model: {exc}; see the model arguments in README.md") from None
    return cfg
