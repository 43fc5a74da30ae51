"""deepks-es: a machine-learned density functional correction (DeePKS) coupled to PySCF.

Public API:
    load_model, save_model, build_model  -- correction models and checkpoints (:mod:`deepks_es.model`)
    attach                               -- add the correction to a PySCF RKS object (:mod:`deepks_es.scf`)
    run_scf                              -- SCF with the retry ladder (:mod:`deepks_es.scf`)
"""

__version__ = "0.1.0"

from .errors import DeePKSInputError  # noqa: E402
from .model import build_model, default_model_path, load_model, save_model  # noqa: E402
from .scf import attach, run_scf  # noqa: E402

__all__ = [
    "__version__",
    "DeePKSInputError",
    "attach",
    "build_model",
    "default_model_path",
    "load_model",
    "run_scf",
    "save_model",
]
