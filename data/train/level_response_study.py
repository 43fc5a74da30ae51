"""What the self-consistent-levels term (losses.level_response) and the orbital loss weights change, on the
same data (#12, stages 4 and 5).

Stage 4's iteration 0 trains model 0 warm from stage 3's wide model 1 at that model's own self-consistent
densities (``labels/default_model_sc/iter.00``) with the eigenvalue and gap terms on the first-order
self-consistent levels. This script trains the same step with other losses, everything else equal (data,
validation split, seed, warm start, 150 epochs at 0.3 x lr): without the term (``level_response: false``),
and with the term and larger gap / eigenvalue weights (the choice of stage 5's weights). It evaluates
these models, stage 4's model 0 and model 1 itself on the validation frames two ways: at the fixed base
density, and with the levels' first-order self-consistent change (``deepks_es.scf.level_response``: what
each model's own SCF gives, to 2e-4 eV on the water monomers). Prints a Markdown table.

    python data/train/level_response_study.py

Needs stage 4's iteration 0 (``bash data/train/RECIPE_STAGE4.sh``, or its committed checkpoint and the
pass-0 base store). Resumable: each variant trains in labels/level_response_study*/ and is reused when done.
"""

import sys
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from deepks_es import load_model
from deepks_es.cli import main
from deepks_es.config import load_config
from deepks_es.dataset import load_frames, make_batches
from deepks_es.train import evaluate
from deepks_es.workflow import split

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from fixed_density_study import warm_train  # noqa: E402  (iterate's warm-start settings)

STAGE4 = load_config(ROOT / "data" / "train" / "pbe_hse06_water_sc.yaml", "iterate")
ITER = Path(STAGE4.workdir) / "iter.00"
OUT = ROOT / "labels" / "level_response_study"
# name -> (workdir, the losses changed from stage 4's)
VARIANTS = {
    "retrained, fixed-density levels (level_response: false)": (OUT, {"level_response": False}),
    "retrained, self-consistent levels, gap 0.1": (OUT.with_name(OUT.name + "_gap0.1"), {"gap": 0.1}),
    "retrained, self-consistent levels, gap 0.1, eigenvalue 0.03 (stage 5's weights)": (
        OUT.with_name(OUT.name + "_gap0.1_eig0.03"),
        {"gap": 0.1, "eigenvalue": 0.03},
    ),
}


def train_variant(out: Path, losses: dict) -> Path:
    """Stage 4's iteration-0 training step with ``losses`` changed, in ``out`` (or its finished model)."""
    if (out / "model.pt").is_file():
        return out / "model.pt"
    out.mkdir(parents=True, exist_ok=True)
    train = warm_train(STAGE4, 0)
    config = {
        "workdir": str(out),
        "target": [str(p) for p in STAGE4.target],
        "base": str(ITER / "base.h5"),
        "base_model": str(STAGE4.init_model),
        "init_model": str(STAGE4.init_model),
        "seeds": STAGE4.seeds,
        "losses": {**asdict(STAGE4.losses), **losses},
        "train": train,
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    main(["train", str(out / "config.yaml"), "--no-progress"])
    return out / "model.pt"


def errors(model, batches) -> str:
    e = evaluate(model, batches, STAGE4.losses.weights, STAGE4.losses.n_virt, STAGE4.losses.skip_core)
    return "{:.3f} / {:.4f} / {:.4f} / {:.4f}".format(
        e["energy_mae_kcal"], e["force_rmse_ev_ang"], e["eig_rmse_ev"], e["gap_mae_ev"]
    )


if __name__ == "__main__":
    base_model = load_model(STAGE4.init_model)
    models = {
        "stage 3 wide model 1 (the base model: its own SCF)": base_model,
        "retrained, self-consistent levels (stage 4 model 0)": load_model(ITER / "model.pt"),
    }
    models.update({name: load_model(train_variant(out, losses)) for name, (out, losses) in VARIANTS.items()})
    frames, _ = load_frames(ITER / "base.h5", STAGE4.target, base_model, level_response=True)
    _, valid = split(frames, STAGE4.train.valid_fraction)
    fixed = [replace(f, level_response=None, v_delta_base=None) for f in valid]
    rows = []
    for frames in (fixed, valid):
        batches = make_batches(frames, STAGE4.train.batch_size)
        rows.append({name: errors(m, batches) for name, m in models.items()})
    print(f"validation frames: {len(valid)}; E MAE (kcal/mol) / F RMSE (eV/Å) / eig RMSE (eV) / gap MAE (eV)")
    print("| model | at the base density | first-order self-consistent levels |")
    print("|---|---|---|")
    for name in models:
        print(f"| {name} | {rows[0][name]} | {rows[1][name]} |")
