"""What limits the stage-2 default model at fixed density: the training step, the loss weights or the net (#12).

Every variant trains on the data of stage 2's iteration 2 (the SCF of model 1 on the 417 training structures,
``labels/default_model_thermal/iter.02/base.h5``, against the HSE06-DF targets), with iterate's validation
split (by geometry key, 10 %), so the rows differ only in how the model was trained. The reference row is
model 2 itself (the shipped model: iterate's step, warm from model 1, 150 epochs at 0.3 x lr with 10
warm-up epochs, loss weights of ``pbe_hse06_water_thermal.yaml``), read from its checkpoint.

    python data/train/fixed_density_study.py [--variants "warm, eig + gap x10"]

Needs the stage-2 iterate workdir (``bash data/train/RECIPE_STAGE2.sh`` up to iteration 2). Resumable: each
variant trains in labels/fixed_density_study/<variant>/ and a finished model is reused. Prints a Markdown
table of the kept epoch's validation and training errors, the parameter count and the training time.
"""

import argparse
import re
from dataclasses import asdict
from pathlib import Path

import yaml

from deepks_es import load_model
from deepks_es.cli import main
from deepks_es.config import load_config
from deepks_es.workflow import kept_entry

ROOT = Path(__file__).resolve().parents[2]
ITER = ROOT / "labels" / "default_model_thermal"
OUT = ROOT / "labels" / "fixed_density_study"
STAGE2 = load_config(ROOT / "data" / "train" / "pbe_hse06_water_thermal.yaml", "iterate")
LOSSES = asdict(STAGE2.losses)
TRAIN = asdict(STAGE2.train)


def warm_train(cfg, k: int) -> dict:
    """The train settings of iterate's warm start of model k (workflow._train_step, first attempt) under the
    iterate config ``cfg``: iteration k's epochs (``train.epochs`` past the list), lr and lr_final x restart_lr."""
    train, it = asdict(cfg.train), cfg.iterate
    epochs = it.epochs[k] if k < len(it.epochs) else train["epochs"]
    return {**train, "epochs": epochs, "lr": train["lr"] * it.restart_lr, "lr_final": train["lr_final"] * it.restart_lr}


WARM = warm_train(STAGE2, 2)  # iterate's warm start of model 2
SCRATCH = {**TRAIN, "epochs": 300, "lr": 1e-3, "lr_final": 1e-5, "warmup_epochs": 0}
#: name -> (start from model 1?, model, losses, train settings)
VARIANTS = {
    "warm, eig + gap x10": (True, None, {**LOSSES, "eigenvalue": 0.1, "gap": 0.1}, WARM),
    "warm, lr x11 (1e-3)": (True, None, LOSSES, {**WARM, "lr": 1e-3, "lr_final": 1e-5}),
    "scratch, mlp 100x3": (False, {"kind": "mlp", "hidden": [100, 100, 100]}, LOSSES, SCRATCH),
    "scratch, mlp 200x3": (False, {"kind": "mlp", "hidden": [200, 200, 200]}, LOSSES, SCRATCH),
    "scratch, mlp_coupled 200x3": (False, {"kind": "mlp_coupled", "hidden": [200, 200, 200]}, LOSSES, SCRATCH),
    "scratch, mlp 200x3, 1000 epochs": (
        False,
        {"kind": "mlp", "hidden": [200, 200, 200]},
        LOSSES,
        {**SCRATCH, "epochs": 1000, "checkpoint_every": 50},
    ),
}


def train_in(out: Path, name: str, config: dict) -> Path:
    """``deepks-es train`` with ``config`` (plus its workdir) in out/<name as a folder name>/, or the model a
    finished run left there; returns the model path."""
    workdir = out / re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if (workdir / "model.pt").is_file():
        return workdir / "model.pt"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump({"workdir": str(workdir), **config}))
    main(["train", str(workdir / "config.yaml"), "--no-progress"])
    return workdir / "model.pt"


def train_variant(name: str) -> Path:
    """Train one variant (or reuse its finished model); returns the model path."""
    warm, model, losses, settings = VARIANTS[name]
    config = {
        "target": [str(p) for p in STAGE2.target],
        "base": str(ITER / "iter.02" / "base.h5"),
        "base_model": str(ITER / "iter.01" / "model.pt"),
        "seeds": [0],
        "losses": losses,
        "train": settings,
        **({"init_model": str(ITER / "iter.01" / "model.pt")} if warm else {"model": model}),
    }
    return train_in(OUT, name, config)


def row(name: str, path: Path) -> str:
    model = load_model(path)
    history = model.settings["training"]["history"]
    kept = kept_entry(history)
    cells = [
        name,
        f"{sum(p.numel() for p in model.parameters()) / 1000:.1f} k",
        f"{kept['epoch']} of {history[-1]['epoch']}",
    ]
    for split in ("valid", "train"):
        e = kept[split]
        errors = (e["energy_mae_kcal"], e["force_rmse_ev_ang"], e["eig_rmse_ev"], e["gap_mae_ev"])
        cells.append("{:.3f} / {:.4f} / {:.4f} / {:.4f}".format(*errors))
    cells.append(f"{history[-1]['wall_s'] / 60:.1f}")
    return "| " + " | ".join(cells) + " |"


def print_table(rows: list) -> None:
    print("| variant | parameters | kept epoch | valid E / F / eig / gap | train E / F / eig / gap | training (min) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    rows = [row("model 2 (shipped: iterate's warm start)", ITER / "iter.02" / "model.pt")]
    rows += [row(name, train_variant(name)) for name in args.variants]
    print_table(rows)
