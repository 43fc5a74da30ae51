"""Correction models (e_delta from descriptors), the model registry and checkpoints.

A model maps per-atom descriptors (natm, ndesc) and element indices (natm,) to e_delta (Eh), the sum of
atomic energies (DeePKS, Chen et al., JCTC 17, 170 (2021), Eq. 6). Models are registered by name in
``MODELS`` so that a checkpoint records ``kind`` and is rebuilt from ``init_args`` alone.

Checkpoint (torch.save of plain Python types and tensors only, loaded with ``weights_only=True``)::

    format          "deepks-es-model"         format_version  1
    kind            registry name             init_args       dict of plain types
    state_dict      tensors (float64)         settings        {basis, xc, trained, description}
    versions        {deepks_es, torch, pyscf, numpy} at save time
    sha256          SHA-256 over everything above (see :func:`content_hash`)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .descriptor import DESCRIPTORS, make_descriptor
from .errors import DeePKSInputError
from .projector import ProjectorBasis

FORMAT = "deepks-es-model"
FORMAT_VERSION = 1
MODELS: dict = {}


def register_model(name: str):
    """Class decorator adding a model class to ``MODELS`` under ``name``."""

    def wrap(cls):
        cls.kind = name
        MODELS[name] = cls
        return cls

    return wrap


class CorrectionModel(nn.Module):
    """Base of all correction models: element bookkeeping, projector and metadata.

    Attributes:
        elements: atomic numbers the model has parameters for.
        projector: the :class:`ProjectorBasis` its descriptors are built with.
        descriptor: the block reduction, one of :data:`deepks_es.descriptor.DESCRIPTORS`.
        settings: ``{basis, xc, trained, description, sha256}``; filled by :func:`save_model` /
            :func:`load_model`, ``trained=False`` for a freshly built model.
    """

    kind = "base"

    def __init__(self, elements, projector: dict | None = None, descriptor: str = "power_traces"):
        super().__init__()
        if descriptor not in DESCRIPTORS:
            raise DeePKSInputError(f"model descriptor must be one of {', '.join(DESCRIPTORS)}, got {descriptor!r}")
        self.descriptor = descriptor
        self.elements = [int(z) for z in elements]
        if len(set(self.elements)) != len(self.elements) or not self.elements:
            raise ValueError(f"elements must be distinct atomic numbers, got {elements}")
        self.projector = ProjectorBasis() if projector is None else ProjectorBasis.from_dict(projector)
        self.settings = {"basis": None, "xc": None, "trained": False, "description": "", "sha256": None}

    def init_args(self) -> dict:
        raise NotImplementedError

    def make_descriptor(self, pdm: list) -> torch.Tensor:
        """This model's descriptor (..., natm, ndesc) of projected density blocks, list over l of
        (..., natm, nrad, 2l+1, 2l+1) (:func:`deepks_es.descriptor.make_descriptor`)."""
        return make_descriptor(pdm, self.descriptor)

    def energy_from_pdm(self, pdm: list, elem_index: torch.Tensor) -> torch.Tensor:
        """e_delta (Eh), shape (...), from projected density blocks, list over l of
        (..., natm, nrad, 2l+1, 2l+1); the one entry point of the SCF and of training. Models that read
        descriptors build them here (:meth:`make_descriptor`)."""
        return self(self.make_descriptor(pdm), elem_index)

    def element_index(self, numbers) -> torch.Tensor:
        """Map atomic numbers (natm,) to model element indices (natm,) int64.

        Raises:
            DeePKSInputError: for an element the model has no parameters for.
        """
        lookup = {z: i for i, z in enumerate(self.elements)}
        missing = sorted({int(z) for z in numbers} - set(lookup))
        if missing:
            from pyscf.data.elements import ELEMENTS

            names = ", ".join(ELEMENTS[z] for z in missing)
            have = ", ".join(ELEMENTS[z] for z in self.elements)
            raise DeePKSInputError(
                f"the correction model has no parameters for element(s) {names} (it knows {have}); "
                "use a model trained on these elements"
            )
        return torch.tensor([lookup[int(z)] for z in numbers], dtype=torch.long)


@register_model("mlp")
class AtomMLPModel(CorrectionModel):
    """Per-atom MLP on invariant descriptors (DeePKS, Chen et al., JCTC 17, 170 (2021), Sec. 2.3).

    e_atom = MLP([x, onehot(element)]) + w_element . x + e_shift[element],
    x = (descriptor - desc_shift[element]) / desc_scale[element],   e_delta = sum_atoms e_atom.

    The last MLP layer, the linear term ``w_element`` and ``e_shift`` start at zero, so a new model
    gives e_delta = 0 exactly until trained.

    Args:
        elements: atomic numbers, e.g. [1, 8].
        projector: :meth:`ProjectorBasis.to_dict` form; default :class:`ProjectorBasis()`.
        descriptor: ``"power_traces"`` (smooth, default) or ``"eigenvalues"`` (deepks-kit's).
        hidden: hidden layer widths (deepks-kit's default is three layers of 100).
        activation: ``"silu"`` (smooth, default) or ``"tanh"``.
    """

    def __init__(self, elements, projector=None, descriptor="power_traces", hidden=(100, 100, 100), activation="silu"):
        super().__init__(elements, projector, descriptor)
        self.hidden = [int(h) for h in hidden]
        self.activation = activation
        act = {"silu": nn.SiLU, "tanh": nn.Tanh}[activation]
        nelem, ndesc = len(self.elements), self.projector.nproj
        self.register_buffer("desc_shift", torch.zeros(nelem, ndesc, dtype=torch.float64))
        self.register_buffer("desc_scale", torch.ones(nelem, ndesc, dtype=torch.float64))
        self.e_shift = nn.Parameter(torch.zeros(nelem, dtype=torch.float64))
        self.linear = nn.Parameter(torch.zeros(nelem, ndesc, dtype=torch.float64))
        layers, width = [], ndesc + nelem
        for h in self.hidden:
            layers += [nn.Linear(width, h, dtype=torch.float64), act()]
            width = h
        last = nn.Linear(width, 1, dtype=torch.float64)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)

    def init_args(self) -> dict:
        return {
            "elements": list(self.elements),
            "projector": self.projector.to_dict(),
            "descriptor": self.descriptor,
            "hidden": list(self.hidden),
            "activation": self.activation,
        }

    def atom_energies(self, descriptor: torch.Tensor, elem_index: torch.Tensor) -> torch.Tensor:
        """Atomic energies (Eh): descriptor (..., natm, ndesc), elem_index (natm,) -> (..., natm)."""
        x = (descriptor - self.desc_shift[elem_index]) / self.desc_scale[elem_index]
        onehot = nn.functional.one_hot(elem_index, len(self.elements)).to(x).expand(*x.shape[:-1], -1)
        e_atom = self.mlp(torch.cat([x, onehot], dim=-1)).squeeze(-1)
        return e_atom + (x * self.linear[elem_index]).sum(-1) + self.e_shift[elem_index]

    def forward(self, descriptor: torch.Tensor, elem_index: torch.Tensor) -> torch.Tensor:
        """e_delta (Eh): descriptor (..., natm, ndesc), elem_index (natm,) -> (...)."""
        return self.atom_energies(descriptor, elem_index).sum(-1)


def build_model(kind: str = "mlp", **init_args) -> CorrectionModel:
    """A new (untrained) model of registered ``kind``.

    Raises:
        DeePKSInputError: for an unknown kind.
    """
    if kind not in MODELS:
        raise DeePKSInputError(f"unknown model kind {kind!r}; known kinds: {', '.join(sorted(MODELS))}")
    return MODELS[kind](**init_args)


def _versions() -> dict:
    import pyscf

    from . import __version__

    # str(): torch.__version__ is a TorchVersion, which weights_only loading refuses
    return {
        "deepks_es": str(__version__),
        "torch": str(torch.__version__),
        "pyscf": str(pyscf.__version__),
        "numpy": str(np.__version__),
    }


def content_hash(payload: dict) -> str:
    """SHA-256 of a checkpoint payload: canonical JSON of its plain fields, then every tensor's name,
    dtype, shape and bytes in sorted name order. The ``sha256`` field itself is excluded."""
    h = hashlib.sha256()
    plain = {k: v for k, v in payload.items() if k not in ("state_dict", "sha256")}
    h.update(json.dumps(plain, sort_keys=True).encode())
    for name in sorted(payload["state_dict"]):
        t = payload["state_dict"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_model(
    model: CorrectionModel,
    path,
    *,
    basis: str,
    xc: str,
    trained: bool,
    description: str = "",
    training: dict | None = None,
) -> str:
    """Write a checkpoint; returns its SHA-256 and stores it in ``model.settings``.

    Args:
        basis: AO basis the model is meant for (e.g. ``"cc-pVDZ"``).
        xc: base functional it corrects (e.g. ``"PBE"``).
        trained: False for an untrained model (the CLI says so when it is used).
        training: optional plain (JSON) record of how it was trained: config, data, history; kept in
            ``settings['training']`` and covered by the hash.
    """
    settings = {"basis": str(basis), "xc": str(xc), "trained": bool(trained), "description": str(description)}
    if training is not None:
        settings["training"] = json.loads(json.dumps(training))
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "init_args": model.init_args(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "settings": settings,
        "versions": _versions(),
    }
    payload["sha256"] = content_hash(payload)
    torch.save(payload, str(path))
    model.settings = {**settings, "sha256": payload["sha256"]}
    return payload["sha256"]


def load_model(path=None) -> CorrectionModel:
    """Load a checkpoint written by :func:`save_model` (``weights_only=True``: no code runs from the file).

    Args:
        path: checkpoint file; ``None`` for the shipped default model (:func:`default_model_path`).

    Returns:
        the model in float64 eval mode, with ``settings`` (basis, xc, trained, description, sha256).

    Raises:
        DeePKSInputError: missing or unreadable file, not a deepks-es checkpoint, SHA-256 mismatch
            (modified or corrupted file), unknown model kind, or weights that do not fit the settings.
    """
    path = Path(default_model_path() if path is None else path)
    if not path.is_file():
        raise DeePKSInputError(f"model file {path} not found; pass --model with an existing checkpoint")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or truncated files
        raise DeePKSInputError(
            f"model file {path} is not a readable deepks-es checkpoint ({type(exc).__name__}); "
            "pass a file written by deepks-es"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DeePKSInputError(f"model file {path} is not a deepks-es checkpoint; pass a file written by deepks-es")
    if payload.get("format_version") != FORMAT_VERSION:
        raise DeePKSInputError(
            f"model file {path} has checkpoint format {payload.get('format_version')}, this deepks-es reads "
            f"{FORMAT_VERSION}; re-save it with a matching deepks-es version"
        )
    stored = payload.get("sha256")
    if stored != content_hash(payload):
        raise DeePKSInputError(
            f"model file {path} fails its SHA-256 check: it was modified or corrupted after saving; "
            "restore the original file or re-train"
        )
    try:
        model = build_model(payload["kind"], **payload["init_args"])
        model.load_state_dict(payload["state_dict"])
    except DeePKSInputError:
        raise
    except Exception as exc:
        raise DeePKSInputError(
            f"model file {path}: weights do not fit its settings ({exc}); re-train the model"
        ) from None
    model.settings = {**payload["settings"], "sha256": stored}
    return model.double().eval()


def default_model_path() -> Path:
    """The shipped default model, ``data/default_model.pt`` inside the package."""
    return Path(__file__).resolve().parent / "data" / "default_model.pt"
