"""deepks-es: a machine-learned density functional correction (DeePKS) coupled to PySCF.

Public API:
    load_model, save_model, build_model  -- correction models and checkpoints (:mod:`deepks_es.model`)
    read_frames, frame_to_mol            -- structures in, PySCF molecules out (:mod:`deepks_es.structures`)
    build_scf                            -- a PySCF RKS object with the correction (:mod:`deepks_es.calc`)
    attach                               -- add the correction to a PySCF RKS object (:mod:`deepks_es.scf`)
    run_scf                              -- SCF with the retry ladder (:mod:`deepks_es.scf`)
    DeePKSCalculator                     -- the ASE calculator (:mod:`deepks_es.ase`)
"""

__version__ = "0.1.0"

from .errors import DeePKSInputError  # noqa: E402
from .model import build_model, default_model_path, load_model, save_model  # noqa: E402
from .scf import attach, run_scf  # noqa: E402
from .structures import frame_to_mol, read_frames  # noqa: E402
from .calc import build_scf  # noqa: E402, I001
from .ase import DeePKSCalculator  # noqa: E402, I001

__all__ = [
    "__version__",
    "DeePKSCalculator",
    "DeePKSInputError",
    "attach",
    "build_model",
    "build_scf",
    "default_model_path",
    "frame_to_mol",
    "load_model",
    "read_frames",
    "run_scf",
    "save_model",
]
