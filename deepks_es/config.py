"""The YAML config of ``deepks-es train`` and ``deepks-es iterate``, validated before any compute.

Every key, its default and meaning (paths are relative to the config file; the section defaults are the
dataclasses of :mod:`deepks_es.settings`)::

    workdir: run                 # outputs: models, checkpoints, label stores, reports
    target: [hse06.h5]           # label store(s) with the reference labels (one path or a list)
    frames: [train/]             # iterate: the training structures (xyz/extxyz files, DeePMD folders,
                                 #   folders; * patterns allowed); train: optional, keeps only these
    base: pbe.h5                 # train only: base store(s) (pbe, or deepks labelled with base_model)
    base_model: null             # train only: the model a deepks base store was labelled with
    init_model: null             # start from this checkpoint instead of a new model
    init_density: null           # iterate only: iteration 0's SCFs start from the converged densities of
                                 #   this label store (same basis; e.g. an earlier run's last pass); a
                                 #   speed hint: when the store is absent they start from PySCF's guess,
                                 #   as a later pass whose previous pass is not stored
    model: {kind: mlp}           # the model kind and its arguments (defaults: the model class's, for mlp
                                 #   descriptor: power_traces, hidden: [100, 100, 100], activation: silu);
                                 #   replaced as a whole when given; the equivariant model:
                                 #   {kind: e3, hidden: "16x0e+8x1o+8x1e+4x2o+8x2e+2x3o+2x3e+2x4e", layers: 2}
                                 #   (its arguments: deepks_es.model.E3Model); the mlp on invariants of the
                                 #   full blocks: {kind: mlp_coupled, hidden: [...]}; checked by building one
    basis: null                  # the AO basis: taken from the label stores; when given it must agree
    xc: null                     # the base functional: train takes it from the base store(s), iterate
                                 #   uses PBE; when given it must agree
    description: ""
    seeds: [0]                   # one model per seed (train); iterate uses the first
    losses: {energy: 1, force: 1, hamiltonian: 0.005, eigenvalue: 0.01, gap: 0, eigenvector: 0.1,
             n_virt: 1, skip_core: false}              # settings.LossSettings
    train: {epochs: 500, lr: 1.0e-3, lr_final: 1.0e-5, warmup_epochs: 0, batch_size: 16,
            valid_fraction: 0.1, prefit: true, checkpoint_every: 50,
            refit_e_shift: true, l2_init: 0, freeze: []}     # settings.TrainSettings (refit_e_shift:
                                 #   every warm start; the last two: fine-tuning from init_model)
    iterate: {iterations: 2, epochs: [], check_sample: 8, min_convergence: 1.0, retries: 2, restart_lr: 1.0}
                                 # settings.IterateSettings: a new model is accepted when its SCF
                                 # converges on >= min_convergence of check_sample training frames, else
                                 # it is retrained with half the epochs and lr; warm starts train at
                                 # restart_lr x lr
    scf: {density_fit: null, grid_level: 3, conv_tol: 1.0e-10, max_cycle: 100, workers: 1,
          threads_per_worker: 2}                       # settings.SCFSettings (density_fit of the base
                                 # SCF, recorded in the model: train takes it from the base stores,
                                 # iterate from init_model when null, else false)
"""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from .errors import DeePKSInputError
from .settings import (
    DEFAULT_MODEL_KIND,
    DEFAULT_XC,
    IterateSettings,
    LossSettings,
    SCFSettings,
    TrainSettings,
    same_name,
)

SECTIONS = {"losses": LossSettings, "train": TrainSettings, "iterate": IterateSettings, "scf": SCFSettings}
PATH_KEYS = ("workdir", "base_model", "init_model", "init_density")
LIST_PATH_KEYS = ("target", "frames", "base")


@dataclass
class Config:
    """A validated config: absolute paths, typed sections. See the module docstring for every key."""

    workdir: str = "run"
    target: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    base: list | None = None
    base_model: str | None = None
    init_model: str | None = None
    init_density: str | None = None
    model: dict = field(default_factory=lambda: {"kind": DEFAULT_MODEL_KIND})
    basis: str | None = None
    xc: str | None = None
    description: str = ""
    seeds: list = field(default_factory=lambda: [0])
    losses: LossSettings = field(default_factory=LossSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    iterate: IterateSettings = field(default_factory=IterateSettings)
    scf: SCFSettings = field(default_factory=SCFSettings)

    def plain(self) -> dict:
        """The config as plain data with paths reduced to their names (a checkpoint must not depend on
        where it was made)."""
        out = asdict(self)
        for key in LIST_PATH_KEYS:
            out[key] = None if out[key] is None else [Path(p).name for p in out[key]]
        for key in PATH_KEYS:
            out[key] = Path(out[key]).name if out[key] else None
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


def _section(cls, given, key: str):
    _check(isinstance(given, dict), f"{key} must be a mapping, got {given!r}")
    known = {f.name for f in fields(cls)}
    for name in sorted(set(given) - known):
        _check(False, f"unknown key {key}.{name}; known: {', '.join(sorted(known))}")
    try:
        return cls(**given).validate(lambda k: f"{key}.{k}")
    except DeePKSInputError as exc:
        raise DeePKSInputError(f"config: {exc}") from None


def load_config(path, command: str) -> Config:
    """Read, complete with defaults and validate a config for ``command`` ("train" or "iterate").

    Returns:
        the :class:`Config` with absolute paths (lists for ``target``, ``frames`` and ``base``).

    Raises:
        DeePKSInputError: unreadable YAML, unknown keys, wrong types or ranges, missing files, a store
            listed twice, a workdir that cannot be written, or what the command needs missing (naming the
            key and the fix).
    """
    from .output import check_output_path

    path = Path(path)
    if not path.is_file():
        raise DeePKSInputError(f"config file {path} not found")
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DeePKSInputError(f"config file {path} is not valid YAML: {exc}") from None
    _check(isinstance(given, dict), f"{path} must hold a mapping of keys")
    known = [f.name for f in fields(Config)]
    for key in sorted(set(given) - set(known)):
        _check(False, f"unknown key {key!r}; known: {', '.join(sorted(known))}")
    values = {k: v for k, v in given.items() if k not in SECTIONS}
    sections = {k: _section(cls, given.get(k, {}), k) for k, cls in SECTIONS.items()}
    root = path.resolve().parent
    for key in LIST_PATH_KEYS:
        value = values.get(key)
        if value is None:
            continue
        value = [value] if isinstance(value, str) else value
        _check(
            isinstance(value, list) and all(isinstance(p, str) for p in value),
            f"{key} must be a path or a list of paths",
        )
        values[key] = [q for p in value for q in _expand(root, p, key)]
        for p in sorted({p for p in values[key] if values[key].count(p) > 1 and key != "frames"}):
            _check(False, f"{key} lists {p} twice; list each store once")
    for key in PATH_KEYS:
        if values.get(key) is not None:
            _check(isinstance(values[key], str), f"{key} must be a path, got {values[key]!r}")
            values[key] = str((root / values[key]).resolve())
    for key in ("basis", "xc", "description"):
        _check(
            values.get(key) is None or isinstance(values[key], str), f"{key} must be a string, got {values.get(key)!r}"
        )
    seeds = values.get("seeds", [0])
    _check(
        isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds),
        f"seeds must be a non-empty list of integers, got {seeds!r}",
    )
    cfg = Config(**{**values, **sections, "workdir": values.get("workdir") or str((root / "run").resolve())})
    _check(bool(cfg.target), "target: give the label store(s) with the reference labels")
    for p in cfg.target + (cfg.base or []) + [p for p in (cfg.base_model, cfg.init_model) if p]:
        _check(Path(p).exists(), f"{p} does not exist")
    for p in cfg.frames:
        _check(Path(p).exists(), f"frames: {p} does not exist")
    if command == "iterate":
        _check(bool(cfg.frames), "frames: iterate needs the training structures")
        _check(cfg.base is None, "base: iterate computes its own base labels; remove the key")
        cfg.xc = cfg.xc or DEFAULT_XC
    else:
        _check(cfg.init_density is None, "init_density: only iterate runs SCFs; remove the key")
        _check(cfg.base is not None, "base: train needs a base label store (pbe or deepks, with matrices)")
    _check_model(cfg, given_model="model" in given)
    _resolve_level(cfg, command)
    _check_targets(cfg, explicit=set(given.get("losses") or {}))
    check_output_path(cfg.workdir, flag="config: workdir", folder=True)
    return cfg


def _resolve_level(cfg: Config, command: str) -> None:
    """Take the basis (all stores) and, for train, the base functional (base stores) from the label
    stores; refuse stores that disagree among themselves or with the config, target stores of several
    methods, and an init or base model for another basis or base functional."""
    from .model import load_model
    from .store import LabelStore

    densities = [cfg.init_density] if cfg.init_density and Path(cfg.init_density).is_file() else []
    metas = {p: LabelStore(p).metadata for p in cfg.target + (cfg.base or []) + densities}

    def one(paths, field: str, what: str):
        values = {p: metas[p][field] for p in paths}
        first = next(iter(values))
        for p, v in values.items():
            if not same_name(v, values[first]):
                raise DeePKSInputError(
                    f"config: label stores of different {what}: {first} has {values[first]!r}, {p} has {v!r}; "
                    f"train on stores of one {what}"
                )
        return values[first], first

    one(cfg.target, "method", "reference method")
    basis, where = one(list(metas), "basis", "basis")
    _check(
        cfg.basis is None or same_name(cfg.basis, basis),
        f"basis {cfg.basis!r} differs from the label stores' {basis!r} ({where}); remove basis: or label the "
        f"stores in {cfg.basis}",
    )
    cfg.basis = basis
    if command == "train":
        xc, where = one(cfg.base, "xc", "base functional")
        _check(
            cfg.xc is None or same_name(cfg.xc, xc),
            f"xc {cfg.xc!r} differs from the base store's functional {xc!r} ({where}); remove xc: or label the "
            f"base with {cfg.xc}",
        )
        cfg.xc = xc
        fitted, where = one(cfg.base, "density_fit", "density fitting")
        _check(
            cfg.scf.density_fit in (None, fitted),
            f"scf.density_fit {cfg.scf.density_fit} differs from the base store's {fitted} ({where}); remove "
            f"scf.density_fit or label the base store with{'' if cfg.scf.density_fit else 'out'} --density-fit",
        )
        cfg.scf = replace(cfg.scf, density_fit=fitted)
    elif cfg.scf.density_fit is None:  # iterate: the base SCF of the init model, else no density fitting
        cfg.scf = cfg.scf.for_model(load_model(cfg.init_model) if cfg.init_model else None)
    for key in ("init_model", "base_model"):
        if getattr(cfg, key):
            try:
                load_model(getattr(cfg, key)).check_compatible(basis=cfg.basis, xc=cfg.xc)
            except DeePKSInputError as exc:
                raise DeePKSInputError(f"config: {key}: {exc}") from None


def _check_model(cfg: Config, given_model: bool) -> None:
    """The model section: a mapping with a known ``kind`` (filled in once here), checked by building a
    throw-away model (descriptor, hidden sizes, projector, ...). With ``init_model``, a ``model`` section
    given in the config must describe the init model (fine-tuning keeps its architecture and projector).
    ``train.freeze`` patterns must name parameters of the model trained."""
    from .model import MODELS, build_model, load_model
    from .train import trainable

    _check(isinstance(cfg.model, dict), f"model must be a mapping, got {cfg.model!r}")
    cfg.model = {"kind": DEFAULT_MODEL_KIND, **cfg.model}
    _check(cfg.model["kind"] in MODELS, f"model.kind must be one of {sorted(MODELS)}, got {cfg.model['kind']!r}")
    args = {k: v for k, v in cfg.model.items() if k != "kind"}
    try:
        given = build_model(cfg.model["kind"], elements=[1], **args)
    except DeePKSInputError as exc:
        raise DeePKSInputError(f"config: model: {exc}") from None
    except TypeError as exc:
        raise DeePKSInputError(f"config: model: {exc}; see the model arguments in README.md") from None
    init = load_model(cfg.init_model) if cfg.init_model else None
    try:
        trainable(init or given, cfg.train.freeze)
    except DeePKSInputError as exc:
        raise DeePKSInputError(f"config: {exc}") from None
    if init is not None and given_model:
        mine, theirs = given.init_args(), init.init_args()
        differ = [k for k in theirs if k != "elements" and mine.get(k) != theirs[k]]
        differ = (["kind"] if given.kind != init.kind else []) + differ
        _check(
            not differ,
            f"model: differs from init_model {Path(cfg.init_model).name} in {', '.join(differ)} (a fine-tuned model "
            "keeps the architecture and projector it starts from); remove model: or train a new model",
        )
        cfg.model = {"kind": init.kind, **{k: v for k, v in theirs.items() if k != "elements"}}


def _check_targets(cfg: Config, explicit: set) -> None:
    """Loss terms the target stores cannot serve: a force weight set in the config for stores with no
    forces (CCSD(T) energies), orbital terms set for wave-function targets (their stored orbitals are RHF's,
    not the method's; such records are trained on energies and forces only). Defaults are not refused:
    a term whose target is missing is left out of the loss."""
    from .dataset import ORBITAL_TARGETS
    from .losses import NEEDS
    from .methods import CC_METHODS
    from .store import LabelStore

    orbital = [t for t, fields in NEEDS.items() if set(fields) & set(ORBITAL_TARGETS)]
    for p in cfg.target:
        store = LabelStore(p)
        method = store.metadata["method"]
        if "force" in explicit and cfg.losses.force > 0:
            has_forces = any("forces" in names for failed, names in store.contents().values() if not failed)
            _check(
                has_forces,
                f"losses.force is {cfg.losses.force} but target store {p} ({method}) has no forces; set "
                "losses.force: 0 to train on its energies alone",
            )
        if method in CC_METHODS:
            bad = [t for t in orbital if t in explicit and getattr(cfg.losses, t) > 0]
            _check(
                not bad,
                f"losses.{bad[0] if bad else ''} is set but target store {p} ({method}) has no Kohn-Sham orbitals "
                f"or Fock matrices; set {', '.join(f'losses.{t}' for t in bad)} to 0",
            )
