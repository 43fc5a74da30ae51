"""Write data/default_model.pt: the untrained placeholder default model (e_delta = 0 exactly).

It has the production architecture (eigen model, default DeePKS projector, hidden 100-100-100, H and O)
so timings measured with it are those of a trained model. Replaced by the trained PBE -> HSE06 model
in the training issue. Run: python data/make_default_model.py
"""

from pathlib import Path

import torch

from deepks_es import build_model, save_model

if __name__ == "__main__":
    torch.manual_seed(0)  # hidden-layer initialisation: the same file, the same hash, on every run
    model = build_model("eigen", elements=[1, 8])
    out = Path(__file__).resolve().parent / "default_model.pt"
    sha = save_model(
        model,
        out,
        basis="cc-pVDZ",
        xc="PBE",
        trained=False,
        description="untrained placeholder: e_delta = 0, results equal the base functional",
    )
    print(f"wrote {out} sha256={sha}")
