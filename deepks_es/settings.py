"""Every setting of deepks-es with its default, type and allowed range, written once.

The command-line flags (their defaults and checks), the YAML config of ``train``/``iterate``
(:mod:`deepks_es.config`), labelling (:class:`deepks_es.methods.LabelSpec`), the SCF
(:func:`deepks_es.calc.build_scf`) and training (:func:`deepks_es.train.train`) all read these dataclasses.
``validate()`` checks one against its field specs and names a bad value the way the user gave it
(``--grid-level`` on the command line, ``scf.grid_level`` in a config).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields, replace

from .errors import DeePKSInputError

DEFAULT_BASIS = "cc-pVDZ"
DEFAULT_XC = "PBE"  # the base functional
DEFAULT_MODEL_KIND = "mlp"  # the other model arguments default in the model class (deepks_es.model)


def same_name(a, b) -> bool:
    """Basis or functional names that PySCF reads alike (case, '-' and '_' ignored): cc-pVDZ = ccpvdz."""

    def key(name):
        return str(name).lower().replace("-", "").replace("_", "") if isinstance(name, str) else repr(name)

    return key(a) == key(b)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value):
    """``value`` as a finite float (YAML reads ``1e-3`` as a string), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        value = float(value)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# (kind, test, what the message says is expected); kind "int"/"float"/"bool"/"ints" converts or checks the type
POSITIVE_INT = ("int", lambda v: v >= 1, "a positive integer")
NONNEGATIVE_INT = ("int", lambda v: v >= 0, "an integer >= 0")
GRID_LEVEL = ("int", lambda v: 0 <= v <= 9, "an integer from 0 to 9 (PySCF grid levels)")
POSITIVE = ("float", lambda v: v > 0, "a positive finite number")
NONNEGATIVE = ("float", lambda v: v >= 0, "a finite number >= 0")
FRACTION = ("float", lambda v: 0 <= v <= 1, "a number in [0, 1]")
VALID_FRACTION = ("float", lambda v: 0 <= v < 1, "a number in [0, 1)")
FACTOR = ("float", lambda v: 0 < v <= 1, "a number in (0, 1]")
BOOL = ("bool", lambda v: True, "true or false")
OPTIONAL_BOOL = ("bool", lambda v: True, "true, false or null")  # None: decided later (SCFSettings.for_model)
POSITIVE_INTS = ("ints", lambda v: all(x >= 1 for x in v), "a list of positive integers")
NAMES = ("strs", lambda v: all(x.strip() for x in v), "a list of names (strings)")


def setting(default, spec, doc: str = ""):
    """A dataclass field with its check ``spec`` (one of the tuples above)."""
    kw = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(metadata={"spec": spec, "doc": doc}, **kw)


class _Settings:
    def validate(self, name=lambda key: key):
        """Validate (and normalise: YAML number strings to float) every field against its spec.

        Args:
            name: how the user spells a field, e.g. :func:`flag` for the command line.

        Returns:
            a new instance with normalised values.

        Raises:
            DeePKSInputError: ``<name> must be <expected>, got <value>``.
        """
        changes = {}
        for f in fields(self):
            kind, test, expected = f.metadata["spec"]
            value = getattr(self, f.name)
            if kind == "float":
                good = _number(value)
            elif kind == "int":
                good = value if _integer(value) else None
            elif kind == "ints":
                good = value if isinstance(value, list) and all(_integer(x) for x in value) else None
            elif kind == "strs":
                good = value if isinstance(value, list) and all(isinstance(x, str) for x in value) else None
            elif value is None and f.metadata["spec"] is OPTIONAL_BOOL:
                changes[f.name] = None
                continue
            else:
                good = value if isinstance(value, bool) else None
            if good is None or not test(good):
                raise DeePKSInputError(f"{name(f.name)} must be {expected}, got {value!r}")
            changes[f.name] = good
        out = replace(self, **changes)
        out.check_fields_together(name)
        return out

    def check_fields_together(self, name) -> None:
        """Checks across fields (after each field passed its own)."""


def flag(key: str) -> str:
    """The command-line spelling of a setting: ``grid_level`` -> ``--grid-level``."""
    return "--" + key.replace("_", "-")


@dataclass
class SCFSettings(_Settings):
    """How each SCF runs: ``deepks-es scf``, ``label``, ``eval`` and the ``scf:`` section of a config."""

    density_fit: bool | None = setting(
        None,
        OPTIONAL_BOOL,
        "density fitting for J (and K) of the base functional (default: as the correction model was trained; "
        "off without a model)",
    )
    grid_level: int = setting(3, GRID_LEVEL, "PySCF DFT grid level")
    conv_tol: float = setting(1e-10, POSITIVE, "SCF energy convergence, Eh (tight enough for FD force checks)")
    max_cycle: int = setting(100, POSITIVE_INT, "SCF cycles per attempt of the retry ladder")
    workers: int = setting(1, POSITIVE_INT, "local Dask worker processes of a batch")
    threads_per_worker: int = setting(2, POSITIVE_INT, "OpenMP threads per worker")

    def for_model(self, model=None) -> SCFSettings:
        """These settings with ``density_fit`` decided: as given, else as the correction ``model`` was trained
        (``model.settings['density_fit']``: its base SCF was density-fitted; models that do not record it, and
        no model, mean off). A model's correction is fitted to its own base, so running it on that base
        reproduces what it was trained for (DF shifts PBE/cc-pVDZ by about -0.014 kcal/mol per water)."""
        if self.density_fit is not None:
            return self
        return replace(self, density_fit=bool(model is not None and model.settings.get("density_fit")))


@dataclass
class LossSettings(_Settings):
    """Loss weights (DeePKS-ES defaults, Liang, Liu, Chen, arXiv 2503.24050, in the atomic units of
    :mod:`deepks_es.losses`) and the orbitals the eigenvalue/eigenvector terms see."""

    energy: float = setting(1.0, NONNEGATIVE)
    force: float = setting(1.0, NONNEGATIVE)
    hamiltonian: float = setting(0.005, NONNEGATIVE)
    eigenvalue: float = setting(0.01, NONNEGATIVE)
    gap: float = setting(0.0, NONNEGATIVE)
    eigenvector: float = setting(0.1, NONNEGATIVE)
    n_virt: int = setting(1, POSITIVE_INT, "virtual orbitals in the eigenvalue/eigenvector terms")
    skip_core: bool = setting(False, BOOL, "leave the chemical cores out of the eigenvalue/eigenvector terms")
    level_response: bool = setting(
        False,
        BOOL,
        "eigenvalue and gap terms on the levels the retrained model gives self-consistently, to first order "
        "(deepks_es.dataset; base stores labelled with --save-response, as iterate then labels them)",
    )

    @property
    def weights(self) -> dict:
        """Weight by term of :data:`deepks_es.losses.TERMS` (``level_response`` is not a term)."""
        from .losses import TERMS

        return {t: float(getattr(self, t)) for t in TERMS}

    def check_fields_together(self, name) -> None:
        if not any(w > 0 for w in self.weights.values()):
            raise DeePKSInputError("losses: at least one weight must be positive")


@dataclass
class TrainSettings(_Settings):
    """The optimiser: Adam, learning rate decaying exponentially from ``lr`` to ``lr_final``, ramped up
    linearly over the first ``warmup_epochs``: Adam's moment estimates start empty, and from a trained
    model (a warm start) its first full-size steps can throw away what the model knew.

    Fine-tuning (``init_model``, e.g. the HSE06 model on CCSD(T) energies) has three further controls:
    ``refit_e_shift`` (the per-element energy shift refitted to the new targets before the first step: a
    new reference method moves every atom's energy by a constant the network should not have to learn;
    iterate refits it at every warm start too, where the new base density relaxes every molecule's energy
    by a near-constant amount: -0.2 kcal/mol per water for the shipped model, README "The default model"),
    ``l2_init`` (L2-SP, Li, Grandvalet, Davoine, ICML 2018: ``l2_init`` x the mean squared change of the
    weights from their initial values, e_shift excluded, added to the per-frame loss) and ``freeze``
    (parameter-name patterns, fnmatch, e.g. ``mlp.0.*``, kept at their initial values)."""

    epochs: int = setting(500, POSITIVE_INT)
    lr: float = setting(1e-3, POSITIVE)
    lr_final: float = setting(1e-5, POSITIVE)
    warmup_epochs: int = setting(0, NONNEGATIVE_INT, "epochs of a linear learning-rate ramp at the start (0: none)")
    batch_size: int = setting(16, POSITIVE_INT, "frames per optimiser step (frames of one composition stacked)")
    valid_fraction: float = setting(0.1, VALID_FRACTION, "structures held out for validation (by geometry key)")
    prefit: bool = setting(True, BOOL, "descriptor statistics and energy shift before training a new model")
    checkpoint_every: int = setting(50, POSITIVE_INT, "epochs between logged evaluations and checkpoints")
    refit_e_shift: bool = setting(
        True, BOOL, "warm starts (fine-tuning, iterate k >= 1): refit the energy shift to the targets first"
    )
    l2_init: float = setting(0.0, NONNEGATIVE, "fine-tuning: weight of the pull to the initial weights (L2-SP)")
    freeze: list = setting([], NAMES, "fine-tuning: parameter-name patterns kept at their initial values")

    def check_fields_together(self, name) -> None:
        if self.lr_final > self.lr:
            raise DeePKSInputError(f"{name('lr_final')} ({self.lr_final}) must not exceed {name('lr')} ({self.lr})")


@dataclass
class IterateSettings(_Settings):
    """The self-consistent training loop (:func:`deepks_es.workflow.run_iterate`)."""

    iterations: int = setting(2, POSITIVE_INT)
    epochs: list = setting([], POSITIVE_INTS, "epochs per iteration (empty: train.epochs each time)")
    check_sample: int = setting(8, NONNEGATIVE_INT, "training frames whose SCF a new model must converge")
    min_convergence: float = setting(1.0, FRACTION, "fraction of check_sample that must converge")
    retries: int = setting(2, NONNEGATIVE_INT, "gentler retrainings when the check fails")
    restart_lr: float = setting(
        1.0,
        FACTOR,
        "factor on train.lr and train.lr_final when a model is warm-started (iteration k >= 1, or from "
        "init_model): a trained model needs smaller steps than a new one (0.3 from a model fitted at another "
        "density; 0.01 from a self-consistent one, where larger steps only make it worse at first: README "
        "'Warm starts')",
    )


@dataclass
class OptSettings(_Settings):
    """Geometry optimisation (``deepks-es opt``); forces in eV/Å, as ASE's optimisers use them."""

    fmax: float = setting(0.05, POSITIVE, "converged when the largest force on an atom is below this, eV/Å")
    steps: int = setting(200, POSITIVE_INT, "optimiser steps in all (a resumed run counts the earlier ones)")


@dataclass
class MDSettings(_Settings):
    """Molecular dynamics (``deepks-es md``): velocity Verlet (NVE), or Langevin when ``temperature`` > 0."""

    steps: int = setting(100, POSITIVE_INT, "MD steps in all (a resumed run counts the earlier ones)")
    timestep: float = setting(0.5, POSITIVE, "time step, fs")
    temperature: float = setting(0.0, NONNEGATIVE, "Langevin thermostat temperature, K (0: NVE, velocity Verlet)")
    initial_temperature: float = setting(
        0.0,
        NONNEGATIVE,
        "Maxwell-Boltzmann initial velocities at this temperature, K (0: velocities from FILE if it has them, "
        "else at --temperature)",
    )
    friction: float = setting(0.01, POSITIVE, "Langevin friction, 1/fs")
    seed: int = setting(0, NONNEGATIVE_INT, "seed of the initial velocities and of the Langevin noise")


def add_arguments(parser, cls, exclude=()) -> None:
    """Command-line flags for the fields of settings dataclass ``cls`` (``--grid-level``), with its defaults
    and docs; booleans (default False) become ``store_true`` flags, optional ones (default None: decided
    later) ``--flag`` / ``--no-flag`` pairs."""
    types = {"int": int, "float": float}
    for f in fields(cls):
        if f.name in exclude:
            continue
        kind = f.metadata["spec"][0]
        doc = f"{f.metadata['doc']} (default {f.default})" if kind != "bool" else f.metadata["doc"]
        if f.metadata["spec"] is OPTIONAL_BOOL:
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=doc)
        elif kind == "bool":
            parser.add_argument(flag(f.name), action="store_true", help=doc)
        else:
            parser.add_argument(flag(f.name), type=types[kind], default=f.default, help=doc)


def from_args(cls, args):
    """The validated ``cls`` instance of parsed command-line ``args`` (fields without a flag keep their
    defaults); errors name the flag."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**given).validate(flag)
