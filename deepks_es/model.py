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

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .descriptor import DESCRIPTORS, make_descriptor
from .errors import DeePKSInputError
from .projector import ProjectorBasis
from .settings import DEFAULT_MODEL_KIND, same_name

#: input scales are floored at this fraction of the element's largest one: a smaller floor (1e-3 was
#: tried) lets near-empty projector channels amplify density changes 1e4-fold, and the stiff correction
#: then keeps DIIS and Newton from converging (seen as a 4-cycle on a training dimer)
SCALE_FLOOR = 0.1
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


def _floored(scale: torch.Tensor) -> torch.Tensor:
    """Input scales (ndesc,) floored at ``SCALE_FLOOR`` of the largest."""
    return torch.clamp(scale, min=SCALE_FLOOR * float(scale.max()) + 1e-12)


class CorrectionModel(nn.Module):
    """Base of all correction models: element bookkeeping, projector, input statistics and metadata.

    A model reads the projected density blocks of its projector's ``blocks`` layout (class attribute
    ``blocks``: ``"shell"`` or ``"atom"``, :mod:`deepks_es.projector`), turns them into per-atom input
    features with :meth:`make_descriptor`, standardises them per element with the buffers ``desc_shift``
    and ``desc_scale`` (set from training data by :meth:`input_stats`, see :func:`deepks_es.train.prefit`)
    and maps them to e_delta in ``forward``.

    Attributes:
        elements: atomic numbers the model has parameters for.
        projector: the :class:`ProjectorBasis` its blocks are built with.
        settings: ``{basis, xc, trained, description, sha256}``; filled by :func:`save_model` /
            :func:`load_model`, ``trained=False`` for a freshly built model.
    """

    kind = "base"
    blocks = "shell"

    def __init__(self, elements, projector: dict | None = None):
        super().__init__()
        self.elements = [int(z) for z in elements]
        if len(set(self.elements)) != len(self.elements) or not self.elements:
            raise ValueError(f"elements must be distinct atomic numbers, got {elements}")
        self.projector = self.make_projector(projector)
        self.settings = {"basis": None, "xc": None, "trained": False, "description": "", "sha256": None}

    @classmethod
    def make_projector(cls, projector: dict | None = None) -> ProjectorBasis:
        """The :class:`ProjectorBasis` of ``projector`` (:meth:`ProjectorBasis.to_dict` form, None for the
        default) with this model's ``blocks``.

        Raises:
            DeePKSInputError: for an invalid projector.
        """
        try:
            basis = ProjectorBasis() if projector is None else ProjectorBasis.from_dict(projector)
        except ValueError as exc:
            raise DeePKSInputError(f"model projector: {exc}") from None
        return dataclasses.replace(basis, blocks=cls.blocks)

    def _init_input_stats(self, ndesc: int) -> None:
        nelem = len(self.elements)
        self.register_buffer("desc_shift", torch.zeros(nelem, ndesc, dtype=torch.float64))
        self.register_buffer("desc_scale", torch.ones(nelem, ndesc, dtype=torch.float64))

    def init_args(self) -> dict:
        raise NotImplementedError

    def make_descriptor(self, pdm: list) -> torch.Tensor:
        """Per-atom input features (..., natm, ndesc) of projected density blocks (block groups of
        ``self.projector``, with leading batch dimensions)."""
        raise NotImplementedError

    def input_stats(self, x: torch.Tensor) -> tuple:
        """(shift, scale), each (ndesc,), standardising the features x (natoms, ndesc) of one element:
        mean and standard deviation, the scale floored at ``SCALE_FLOOR`` of the largest (near-empty
        projector blocks have features ~1e-15 that must not be amplified)."""
        std = x.std(0) if len(x) > 1 else torch.ones(x.shape[-1], dtype=x.dtype)
        return x.mean(0), _floored(std)

    def energy_from_pdm(self, pdm: list, elem_index: torch.Tensor) -> torch.Tensor:
        """e_delta (Eh), shape (...), from projected density blocks (block groups of ``self.projector``,
        with leading batch dimensions); the one entry point of the SCF and of training."""
        return self(self.make_descriptor(pdm), elem_index)

    def check_compatible(self, basis=None, xc=None, numbers=None) -> None:
        """The one check that this model may correct a calculation: the AO basis and the base functional it
        was trained for (when recorded in ``settings``; names compared without case, '-' and '_') and the
        elements ``numbers`` (natm,). Arguments left None are not checked.

        Raises:
            DeePKSInputError: naming what differs and the fix.
        """
        trained = self.settings.get("basis")
        if basis is not None and trained is not None and not same_name(trained, basis):
            raise DeePKSInputError(
                f"the model was trained in basis {trained}, the calculation uses {basis}; use --basis {trained} "
                "or a model trained for this basis"
            )
        trained = self.settings.get("xc")
        if xc is not None and trained and not same_name(trained, xc):
            raise DeePKSInputError(
                f"the model corrects base functional {trained}, the calculation uses {xc}; use --xc {trained} "
                f"or a model trained on {xc}"
            )
        if numbers is not None:
            self.element_index(numbers)

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
        descriptor: ``"power_traces"`` (smooth, default) or ``"eigenvalues"`` (deepks-kit's), one of
            :data:`deepks_es.descriptor.DESCRIPTORS`.
        hidden: hidden layer widths (deepks-kit's default is three layers of 100).
        activation: ``"silu"`` (smooth, default) or ``"tanh"``.

    Raises:
        DeePKSInputError: for an unknown descriptor or activation.
    """

    def __init__(self, elements, projector=None, descriptor="power_traces", hidden=(100, 100, 100), activation="silu"):
        super().__init__(elements, projector)
        if descriptor not in DESCRIPTORS:
            raise DeePKSInputError(f"model descriptor must be one of {', '.join(DESCRIPTORS)}, got {descriptor!r}")
        if activation not in ("silu", "tanh"):
            raise DeePKSInputError(f"model activation must be 'silu' or 'tanh', got {activation!r}")
        if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise DeePKSInputError(f"model hidden must be a list of positive layer widths, got {hidden!r}")
        self.descriptor = descriptor
        self.hidden = [int(h) for h in hidden]
        self.activation = activation
        act = {"silu": nn.SiLU, "tanh": nn.Tanh}[activation]
        nelem, ndesc = len(self.elements), self._setup_descriptor()
        self._init_input_stats(ndesc)
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

    def _setup_descriptor(self) -> int:
        """Build what :meth:`make_descriptor` needs; returns the descriptor length per atom."""
        return self.projector.nproj

    def make_descriptor(self, pdm: list) -> torch.Tensor:
        """Invariant descriptor (..., natm, nproj) of the shell blocks, list over l of
        (..., natm, nrad, 2l+1, 2l+1) (:func:`deepks_es.descriptor.make_descriptor`)."""
        return make_descriptor(pdm, self.descriptor)

    def atom_energies(self, descriptor: torch.Tensor, elem_index: torch.Tensor) -> torch.Tensor:
        """Atomic energies (Eh): descriptor (..., natm, ndesc), elem_index (natm,) -> (..., natm)."""
        x = (descriptor - self.desc_shift[elem_index]) / self.desc_scale[elem_index]
        onehot = nn.functional.one_hot(elem_index, len(self.elements)).to(x).expand(*x.shape[:-1], -1)
        e_atom = self.mlp(torch.cat([x, onehot], dim=-1)).squeeze(-1)
        return e_atom + (x * self.linear[elem_index]).sum(-1) + self.e_shift[elem_index]

    def forward(self, descriptor: torch.Tensor, elem_index: torch.Tensor) -> torch.Tensor:
        """e_delta (Eh): descriptor (..., natm, ndesc), elem_index (natm,) -> (...)."""
        return self.atom_energies(descriptor, elem_index).sum(-1)


@register_model("mlp_coupled")
class CoupledMLPModel(AtomMLPModel):
    """The per-atom MLP of :class:`AtomMLPModel` on invariants of each atom's *full* projected density block
    (``blocks="atom"``), which keep the couplings between radial shells and between angular channels:

        x = [tr(P_nl^k) (the mlp's power traces), scalars and squared norms of the irreps of the full block]

    (:class:`deepks_es.descriptor.PdmIrreps` and its :meth:`~deepks_es.descriptor.PdmIrreps.invariants`;
    108 + 1386 = 1494 values per atom for the default projector). The scalars include the inter-shell
    traces sum_m P(n l m, n' l m); the squared norms are quadratic in P, so e_delta stays a smooth function
    of the density as with power traces. No messages between atoms.

    Args:
        elements, projector, hidden, activation: as :class:`AtomMLPModel` (``blocks`` is set to ``"atom"``).

    Raises:
        DeePKSInputError: for an invalid projector, hidden or activation.
    """

    blocks = "atom"

    def __init__(self, elements, projector=None, hidden=(100, 100, 100), activation="silu"):
        super().__init__(elements, projector, "power_traces", hidden, activation)

    def _setup_descriptor(self) -> int:
        from .descriptor import PdmIrreps

        self.irreps = PdmIrreps(self.projector)
        return self.projector.nproj + self.irreps.irreps_out.num_irreps

    def init_args(self) -> dict:
        return {k: v for k, v in super().init_args().items() if k != "descriptor"}

    def make_descriptor(self, pdm: list) -> torch.Tensor:
        """Invariants (..., natm, 1494) of the full blocks [(..., natm, 1, nproj, nproj)]: the power traces
        of the shell blocks on their diagonal, then :meth:`PdmIrreps.invariants` of the whole block."""
        from .descriptor import shell_blocks

        p = self.projector
        traces = make_descriptor(shell_blocks(pdm, p.nrad, p.lmax), "power_traces")
        return torch.cat([traces, self.irreps.invariants(self.irreps(pdm))], dim=-1)


#: hidden irreps of the default e3 model: every irrep type the full blocks have, l <= 4, both parities
E3_HIDDEN = "16x0e+8x1o+8x1e+4x2o+8x2e+2x3o+2x3e+2x4e"


@register_model("e3")
class E3Model(CorrectionModel):
    """Equivariant per-atom model on the full projected density matrix (e3nn), an invariant e_delta.

    Input: each atom's full nproj x nproj projected density block (``blocks="atom"``: all shells l <= 2,
    all radial pairs, couplings between shells and angular channels included), decomposed into O(3)
    irreps by :class:`deepks_es.descriptor.PdmIrreps` (234x0e+288x1o+132x1e+144x2o+300x2e+144x3o+66x3e
    +78x4e, dim 5886 for the default projector) and standardised per element and channel (scalars: mean
    and standard deviation; l > 0: shift 0, root mean square over the channel, so the scaling commutes
    with rotations). Network (e3nn, Geiger & Smidt, arXiv 2207.09453)::

        h_0     = Linear_element(x)                                  (x (x) onehot(element), all paths)
        h_k+1   = h_k + Gate(TensorSquare(squash(h_k))),  k < layers (SiLU on scalars, sigmoid gates)
        e_atom  = Linear_element(h_layers)[0e] + e_shift[element],   e_delta = sum_atoms e_atom
        squash(h)_c = h_c / sqrt(1 + mean_m h_cm^2)                 (per channel c)

    The tensor square couples channels of every l into invariants (without it the l > 0 features could
    not reach the energy); the gates are the nonlinearity that keeps equivariance; the squash bounds
    each block's update, so e_delta grows at most linearly away from the training densities (as the
    mlp's does), which the SCF needs on its way from the initial guess. Only scalars reach the
    energy, so e_delta is invariant under rotations, inversion and atom permutations, and v_delta =
    d e_delta / d dm is covariant. Atoms do not exchange messages: every atom sees only its own projected
    density (which already feels its neighbours through the density matrix), like the ``mlp`` model.
    The read-out starts at zero, so a new model gives e_delta = 0 exactly.

    Args:
        elements: atomic numbers, e.g. [1, 8].
        projector: :meth:`ProjectorBasis.to_dict` form; ``blocks`` is set to ``"atom"``.
        hidden: e3nn irreps string of the hidden features (needs at least one 0e); default
            :data:`E3_HIDDEN`.
        layers: gated tensor-square blocks.

    Raises:
        DeePKSInputError: for invalid hidden irreps or layers.
    """

    blocks = "atom"

    def __init__(self, elements, projector=None, hidden=E3_HIDDEN, layers=2):
        from e3nn import nn as enn
        from e3nn import o3

        from .descriptor import PdmIrreps

        super().__init__(elements, projector)
        try:
            irreps_hidden = o3.Irreps(hidden).sort().irreps.simplify()
        except (ValueError, AssertionError) as exc:
            raise DeePKSInputError(f"model hidden must be an e3nn irreps string like {E3_HIDDEN!r} ({exc})") from None
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_hidden if ir.l > 0])
        if scalars != o3.Irreps(f"{scalars.num_irreps}x0e") or scalars.num_irreps == 0:
            raise DeePKSInputError(f"model hidden needs scalars 0e only (at least one), got {hidden!r}")
        if int(layers) != layers or layers < 0:
            raise DeePKSInputError(f"model layers must be a non-negative integer, got {layers!r}")
        self.hidden, self.layers, self.irreps_hidden = str(irreps_hidden), int(layers), irreps_hidden
        self.irreps = PdmIrreps(self.projector)
        self._init_input_stats(self.irreps.irreps_out.dim)
        onehot = o3.Irreps(f"{len(self.elements)}x0e")
        self.embed = o3.FullyConnectedTensorProduct(self.irreps.irreps_out, onehot, irreps_hidden)
        self.squares = nn.ModuleList()
        self.gates = nn.ModuleList()
        for _ in range(self.layers):
            gate = enn.Gate(scalars, [nn.functional.silu], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)
            self.gates.append(gate)
            self.squares.append(o3.TensorSquare(irreps_hidden, gate.irreps_in))
        self.readout = o3.FullyConnectedTensorProduct(irreps_hidden, onehot, "1x0e")
        self.to(torch.float64)
        with torch.no_grad():
            self.readout.weight.zero_()
        self.e_shift = nn.Parameter(torch.zeros(len(self.elements), dtype=torch.float64))

    def init_args(self) -> dict:
        return {
            "elements": list(self.elements),
            "projector": self.projector.to_dict(),
            "hidden": self.hidden,
            "layers": self.layers,
        }

    def make_descriptor(self, pdm: list) -> torch.Tensor:
        """Irreps features (..., natm, 5886) of the full blocks [(..., natm, 1, nproj, nproj)]
        (:class:`deepks_es.descriptor.PdmIrreps`); equivariant, not invariant."""
        return self.irreps(pdm)

    def input_stats(self, x: torch.Tensor) -> tuple:
        """(shift, scale) of features x (natoms, ndesc) of one element: scalars as the base class; every
        l > 0 channel shift 0 and scale its root mean square over atoms and components (one factor per
        channel keeps rotations), all floored at ``SCALE_FLOOR`` of the largest scale."""
        shift, scale = [], []
        for (mul, ir), sl in zip(self.irreps.irreps_out, self.irreps.irreps_out.slices()):
            xs = x[:, sl].reshape(len(x), mul, ir.dim)
            s = xs.std(0)[:, 0] if ir.l == 0 and len(x) > 1 else xs.pow(2).mean((0, 2)).sqrt()
            scale.append(s[:, None].expand(mul, ir.dim).reshape(-1))
            shift.append(x[:, sl].mean(0) if ir.l == 0 else torch.zeros_like(x[0, sl]))
        return torch.cat(shift), _floored(torch.cat(scale))

    def atom_energies(self, descriptor: torch.Tensor, elem_index: torch.Tensor) -> torch.Tensor:
        """Atomic energies (Eh): features (..., natm, ndesc), elem_index (natm,) -> (..., natm)."""
        x = (descriptor - self.desc_shift[elem_index]) / self.desc_scale[elem_index]
        onehot = nn.functional.one_hot(elem_index, len(self.elements)).to(x).expand(*x.shape[:-1], -1)
        h = self.embed(x, onehot)
        for tp, gate in zip(self.squares, self.gates):
            h = h + gate(tp(self._squash(h)))
        return self.readout(h, onehot).squeeze(-1) + self.e_shift[elem_index]

    def _squash(self, h: torch.Tensor) -> torch.Tensor:
        """Every channel c of h scaled by 1 / sqrt(1 + mean_m h_cm^2): equivariant (a function of the
        channel's norm), smooth, and bounded, so that a block's update is bounded and e_delta grows at most
        linearly in the features far from the training densities (without it the quartic growth of two
        tensor squares gave e_delta = 2.8 Eh at the MINAO guess of a monomer and the SCF diverged)."""
        out = []
        for (mul, ir), sl in zip(self.irreps_hidden, self.irreps_hidden.slices()):
            c = h[..., sl].unflatten(-1, (mul, ir.dim))
            out.append((c / (1 + c.pow(2).mean(-1, keepdim=True)).sqrt()).flatten(-2))
        return torch.cat(out, dim=-1)

    def forward(self, descriptor: torch.Tensor, elem_index: torch.Tensor) -> torch.Tensor:
        """e_delta (Eh): features (..., natm, ndesc), elem_index (natm,) -> (...)."""
        return self.atom_energies(descriptor, elem_index).sum(-1)


def build_model(kind: str = DEFAULT_MODEL_KIND, **init_args) -> CorrectionModel:
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
    density_fit: bool = False,
) -> str:
    """Write a checkpoint; returns its SHA-256 and stores it in ``model.settings``.

    Args:
        basis: AO basis the model is meant for (e.g. ``"cc-pVDZ"``).
        xc: base functional it corrects (e.g. ``"PBE"``).
        density_fit: whether that base SCF was density-fitted (the default of every SCF the model runs in:
            :meth:`deepks_es.settings.SCFSettings.for_model`).
        trained: False for an untrained model (the CLI says so when it is used).
        training: optional plain (JSON) record of how it was trained: config, data, history; kept in
            ``settings['training']`` and covered by the hash.
    """
    settings = {"basis": str(basis), "xc": str(xc), "trained": bool(trained), "description": str(description)}
    if density_fit:  # recorded only when on: the checkpoints of models on a plain base stay as they were
        settings["density_fit"] = True
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


#: shipped models by name (files in the package's data folder)
MODEL_NAMES = {"default": "default_model.pt", "e3": "e3_model.pt", "ccsdt": "ccsdt_model.pt"}


def model_path(name_or_path=None) -> Path:
    """The checkpoint file of a shipped model's name (:data:`MODEL_NAMES`; None = ``default``) or of a path.

    Raises:
        DeePKSInputError: neither an existing file nor a shipped model's name.
    """
    if name_or_path is None or str(name_or_path) in MODEL_NAMES:
        return Path(__file__).resolve().parent / "data" / MODEL_NAMES[str(name_or_path or "default")]
    path = Path(name_or_path)
    if not path.is_file():
        raise DeePKSInputError(
            f"model {name_or_path} is neither a file nor a shipped model ({', '.join(MODEL_NAMES)}); "
            "pass --model with an existing checkpoint or a shipped model's name"
        )
    return path


def resolve_level(model=None, basis: str | None = None, xc: str | None = None) -> tuple:
    """The correction model and the level it runs at, checked before any compute (``deepks-es scf``, opt,
    md and :class:`~deepks_es.ase.DeePKSCalculator` all start here).

    Args:
        model: a checkpoint path, a shipped model's name (:data:`MODEL_NAMES`), None for the shipped default
            model, the string ``"none"`` for the plain base functional, or a :class:`CorrectionModel`.
        basis, xc: the AO basis and base functional; default the model's, else cc-pVDZ and PBE.

    Returns:
        (model or None, name, basis, xc): name is the path or shipped name, ``"none"``, or
        ``"<in-memory model>"``.

    Raises:
        DeePKSInputError: an unreadable checkpoint or unknown name, a basis or functional PySCF does not
            know, a model trained for another basis or base functional.
    """
    from .calc import check_level
    from .settings import DEFAULT_BASIS, DEFAULT_XC

    if isinstance(model, CorrectionModel):
        model, name = model.double().eval(), "<in-memory model>"
    elif isinstance(model, str) and model.lower() == "none":
        model, name = None, "none"
    else:
        model, name = load_model(model), str(model if model is not None else "default")
    trained = model.settings if model is not None else {}
    basis = basis or trained.get("basis") or DEFAULT_BASIS
    xc = xc or trained.get("xc") or DEFAULT_XC
    check_level(basis, xc)
    if model is not None:
        model.check_compatible(basis=basis, xc=xc)
    return model, name, basis, xc


def load_model(path=None) -> CorrectionModel:
    """Load a checkpoint written by :func:`save_model` (``weights_only=True``: no code runs from the file).

    Args:
        path: checkpoint file, or a shipped model's name (:data:`MODEL_NAMES`); ``None`` for the shipped
            default model.

    Returns:
        the model in float64 eval mode, with ``settings`` (basis, xc, trained, description, sha256).

    Raises:
        DeePKSInputError: missing or unreadable file, not a deepks-es checkpoint, SHA-256 mismatch
            (modified or corrupted file), unknown model kind, or weights that do not fit the settings.
    """
    path = model_path(path)
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
    return model_path("default")
