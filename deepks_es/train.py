"""Training a correction model on :mod:`deepks_es.dataset` frames with the :mod:`deepks_es.losses` terms.

Adam with an exponentially decaying learning rate, one optimiser step per batch (frames of one
composition), shuffled each epoch with the run's seed. A new model is first *prefitted*: per-element
descriptor shift and scale from the training frames and the per-element energy shift (:func:`prefit`;
deepks-kit's preshift, Chen et al., JCTC 17, 170 (2021), Sec. 3). A warm start (iterate, fine-tuning)
skips the prefit and refits only the energy shift (:func:`refit_e_shift`); fine-tuning may also pull the
weights to their initial values or freeze some (:class:`~deepks_es.settings.TrainSettings`).

The training state (model, optimiser, epoch, history) is checkpointed every ``checkpoint_every`` epochs
with an atomic rename; a run that finds a checkpoint of the same settings resumes from it.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .dataset import make_batches, predict
from .errors import DeePKSInputError
from .losses import TERMS, frame_losses, homo_lumo_gap, predictions_for, total_loss
from .output import EV_PER_ANG_PER_AU, HARTREE2EV, KCAL_PER_MOL_PER_HARTREE
from .settings import LossSettings, TrainSettings


def _element_counts(model, batches) -> torch.Tensor:
    """(frames, elements) atom counts of every frame of ``batches``, in batch order."""
    nelem = len(model.elements)
    return torch.stack(
        [
            torch.nn.functional.one_hot(model.element_index(b.numbers), nelem).sum(0).to(torch.float64)
            for b in batches
            for _ in range(len(b))
        ]
    )


def _fit_shift(model, batches, residual: torch.Tensor) -> torch.Tensor:
    """The least-squares (minimum-norm) per-element energies (Eh) that best fit ``residual`` (frames,)."""
    return torch.linalg.lstsq(_element_counts(model, batches), residual[:, None], driver="gelsd").solution[:, 0]


@torch.no_grad()
def prefit(model, batches) -> None:
    """Set the per-element input shift and scale and the per-element energy shift from the data.

    The input statistics are the model's (:meth:`~deepks_es.model.CorrectionModel.input_stats`) over the
    training atoms of each element.
    ``e_shift`` is the least-squares (minimum-norm) fit of target - base energies on the element counts;
    the linear term and the network stay zero, so v_delta starts at zero (a descriptor-linear prefit on a
    few hundred frames gives large coefficients and a v_delta that spoils the first SCF).
    """
    desc = [model.make_descriptor(b.pdm) for b in batches]
    for e in range(len(model.elements)):
        rows = [d[:, model.element_index(b.numbers) == e].reshape(-1, d.shape[-1]) for d, b in zip(desc, batches)]
        x = torch.cat(rows)
        if len(x):
            model.desc_shift[e], model.desc_scale[e] = model.input_stats(x)
    model.e_shift.copy_(_fit_shift(model, batches, torch.cat([b.target["e_tot"] - b.e_base for b in batches])))


def refit_e_shift(model, batches) -> torch.Tensor:
    """Fine-tuning: add to ``e_shift`` the per-element energies that best fit the model's present energy
    errors (target - predicted, least squares on the element counts). Returns the change (Eh per element).

    A new reference method (HSE06 -> CCSD(T)) moves every atom's total energy by a near-constant amount;
    as a shift it costs no weight change (MACE-style refitted atomic reference energies for fine-tuning).
    """
    predicted = [predict(model, b, create_graph=False, outputs=("e_tot",))["e_tot"].detach() for b in batches]
    residual = torch.cat([b.target["e_tot"] - e for b, e in zip(batches, predicted)])
    change = _fit_shift(model, batches, residual)
    with torch.no_grad():
        model.e_shift += change
    return change


def trainable(model, freeze: list) -> dict:
    """The parameters the optimiser moves: all but those whose names match a ``freeze`` pattern.

    Raises:
        DeePKSInputError: a pattern that matches no parameter (naming the model's parameters).
    """
    names = [n for n, _ in model.named_parameters()]
    for pattern in freeze:
        if not fnmatch.filter(names, pattern):
            raise DeePKSInputError(
                f"train.freeze: {pattern!r} matches no parameter of the model; its parameters: {', '.join(names)}"
            )
    return {n: p for n, p in model.named_parameters() if not any(fnmatch.fnmatch(n, f) for f in freeze)}


def l2_init_penalty(params: dict, init: dict) -> torch.Tensor:
    """L2-SP (Li, Grandvalet, Davoine, ICML 2018): the mean over all weights in ``init`` of the squared
    change from their initial values (``e_shift`` is left out of ``init``: the shift must follow the data)."""
    total = sum(((params[n] - w0) ** 2).sum() for n, w0 in init.items())
    return total / sum(w0.numel() for w0 in init.values())


def evaluate(model, batches, weights: dict, n_virt: int, skip_core: bool = False) -> dict:
    """Mean loss terms and errors over frames at the fixed base densities.

    Returns:
        ``loss`` and each term's mean, plus ``energy_mae_kcal`` (per frame), ``force_rmse_ev_ang``,
        ``eig_rmse_ev`` (valence: occupied without the chemical cores, + n_virt), ``gap_mae_ev`` where
        targets exist, and ``frames``.
    """
    sums: dict = {}
    counts: dict = {}
    terms = [t for t in TERMS if weights.get(t, 0) > 0]
    for b in batches:
        pred = predict(model, b, create_graph=False)
        losses = frame_losses(pred, b, TERMS, n_virt, skip_core)
        pred = {k: v.detach() for k, v in pred.items()}
        stats = {"loss": total_loss({k: v.detach() for k, v in losses.items() if k in terms}, weights)}
        stats.update({k: v.detach().sum() for k, v in losses.items()})
        stats["energy_ae"] = (pred["e_tot"] - b.target["e_tot"]).abs().sum()
        if "forces" in b.target:
            stats["force_se"] = ((pred["forces"] - b.target["forces"]) ** 2).mean((-1, -2)).sum()
        if "mo_energy" in b.target:
            k = b.nocc + n_virt
            de = pred["mo_energy"][:, b.ncore : k] - b.target["mo_energy"][:, b.ncore : k]
            stats["eig_se"] = (de**2).mean(-1).sum()
            gap_error = homo_lumo_gap(pred["mo_energy"], b.nocc) - homo_lumo_gap(b.target["mo_energy"], b.nocc)
            stats["gap_ae"] = gap_error.abs().sum()
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + len(b)
    mean = {k: sums[k] / counts[k] for k in sums}
    out = {k: mean[k] for k in ["loss", *TERMS] if k in mean}
    out["frames"] = sum(len(b) for b in batches)
    out["energy_mae_kcal"] = mean["energy_ae"] * KCAL_PER_MOL_PER_HARTREE
    if "force_se" in mean:
        out["force_rmse_ev_ang"] = math.sqrt(mean["force_se"]) * EV_PER_ANG_PER_AU
    if "eig_se" in mean:
        out["eig_rmse_ev"] = math.sqrt(mean["eig_se"]) * HARTREE2EV
        out["gap_mae_ev"] = mean["gap_ae"] * HARTREE2EV
    return out


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, str(tmp))
    os.replace(tmp, path)


def kept_entry(history: list) -> dict:
    """The history entry of the weights :func:`train` kept (the last one for older histories)."""
    return next((e for e in history if e.get("kept")), history[-1])


def train(
    model,
    train_frames,
    valid_frames,
    opts: TrainSettings,
    losses: LossSettings,
    seed: int = 0,
    checkpoint=None,
    log=print,
    progress=True,
) -> list:
    """Train ``model`` in place.

    Args:
        train_frames, valid_frames: :class:`~deepks_es.dataset.FrameData` lists (valid may be empty).
        opts: the optimiser (:class:`~deepks_es.settings.TrainSettings`; ``valid_fraction`` is the
            caller's).
        losses: the loss weights and orbital ranges (:class:`~deepks_es.settings.LossSettings`).
        seed: initialisation and shuffling.
        checkpoint: file for the resumable training state, or None.
        log: one line per ``checkpoint_every`` epochs.

    At the end the model gets the weights of the logged epoch with the lowest validation loss (training
    loss without a validation set): Adam on these losses shows occasional spikes (a 1000-fold loss jump
    at epoch 300 of 500 was seen), and the last epoch may fall on one. Epoch 0, the starting weights (after
    the prefit or the energy-shift refit), is logged and can be kept: a warm start of a converged model
    can make it worse in its first epochs (Adam moves every parameter by about the learning rate at first,
    whatever its gradient; stage 7's first warm start went from validation loss 2.8e-6 to 1.7e-5).

    Returns:
        the history: one dict per logged epoch, from epoch 0 (``epoch``, ``lr`` of the next epoch,
        ``wall_s``, ``train``/``valid`` from :func:`evaluate`); the kept epoch has ``"kept": True``.
    """
    from tqdm import tqdm

    mismatch = [f.name for f in train_frames + valid_frames if f.projector != model.projector]
    if mismatch:
        raise DeePKSInputError(
            f"frames {', '.join(mismatch[:3])} were built for another projector than the model's "
            f"({model.projector}); load them with load_frames(..., projector=model.projector)"
        )
    weights = losses.weights
    terms = [t for t in TERMS if weights[t] > 0]
    outputs = predictions_for(terms)
    torch.manual_seed(seed)
    batches = make_batches(train_frames, opts.batch_size)
    valid = make_batches(valid_frames, opts.batch_size)
    params = trainable(model, opts.freeze)
    for name, p in model.named_parameters():
        p.requires_grad_(name in params)
    optim = torch.optim.Adam(params.values(), lr=opts.lr)
    gamma = (opts.lr_final / opts.lr) ** (1.0 / max(opts.epochs - 1, 1))
    warmup = max(opts.warmup_epochs, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda epoch: gamma**epoch * min(1.0, (epoch + 1) / warmup))
    history, start, best = [], 0, None
    checkpoint = Path(checkpoint) if checkpoint else None
    # what a checkpoint must have been written with to be resumed: the optimiser, the losses, the seed and
    # the training frames (a changed config starts over instead of continuing another run's schedule)
    fingerprint = json.dumps([asdict(opts), asdict(losses), seed, sorted(f.key for f in train_frames)], default=str)
    state = torch.load(str(checkpoint), weights_only=True) if checkpoint is not None and checkpoint.is_file() else None
    if state is not None and state.get("settings") != fingerprint:
        log(f"{checkpoint} was written with other training settings or frames; training starts over")
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        history, start, best = state["history"], state["epoch"], state.get("best")
        init = state.get("init", {})
        log(f"resuming training at epoch {start} from {checkpoint}")
    else:
        if opts.prefit:
            prefit(model, batches)
        elif opts.refit_e_shift:
            change = refit_e_shift(model, batches)
            shifts = ", ".join(f"Z={z} {x * 1e3:+.3f} mEh" for z, x in zip(model.elements, change))
            log(f"energy shift refitted to the targets: {shifts}")
        init = {n: p.detach().clone() for n, p in params.items() if n != "e_shift"} if opts.l2_init > 0 else {}
    t0 = time.perf_counter()

    def log_epoch(epoch: int):
        """Evaluate and log the weights after ``epoch`` epochs (0: the starting weights), keep the best,
        write the checkpoint."""
        nonlocal best
        model.eval()
        entry = {
            "epoch": epoch,
            "lr": float(sched.get_last_lr()[0]),
            "wall_s": time.perf_counter() - t0,
            "train": evaluate(model, batches, weights, losses.n_virt, losses.skip_core),
        }
        if valid:
            entry["valid"] = evaluate(model, valid, weights, losses.n_virt, losses.skip_core)
        model.train()
        history.append(entry)
        v = entry.get("valid", entry["train"])
        if best is None or v["loss"] < best["loss"]:
            best = {"epoch": epoch, "loss": v["loss"], "model": copy.deepcopy(model.state_dict())}
        line = (
            f"epoch {epoch}: loss train {entry['train']['loss']:.3e}"
            + (f" valid {entry['valid']['loss']:.3e}" if valid else "")
            + f", energy MAE {v['energy_mae_kcal']:.3f} kcal/mol"
            + (f", force RMSE {v['force_rmse_ev_ang']:.4f} eV/A" if "force_rmse_ev_ang" in v else "")
            + (f", eig RMSE {v['eig_rmse_ev']:.4f} eV" if "eig_rmse_ev" in v else "")
        )
        bar.write(line) if progress else log(line)
        if checkpoint is not None:
            state = {
                "model": model.state_dict(),
                "optim": optim.state_dict(),
                "sched": sched.state_dict(),
                "history": history,
                "epoch": epoch,
                "best": best,
                "init": init,
                "settings": fingerprint,
            }
            _save_state(checkpoint, state)

    rng = np.random.default_rng(seed + start)
    ntrain = sum(len(b) for b in batches)
    bar = tqdm(range(start, opts.epochs), desc="training", unit="epoch", disable=not progress)
    if not history:  # a new run (a resumed one has logged its epoch 0)
        # the starting weights are a candidate too: a warm start whose first steps only make the model worse
        # at its own densities (Adam's first steps are ~lr per parameter, whatever the gradient) keeps them
        log_epoch(0)
    model.train()
    for epoch in bar:
        for i in rng.permutation(len(batches)):
            b = batches[i]
            optim.zero_grad()
            terms_b = frame_losses(predict(model, b, outputs=outputs), b, terms, losses.n_virt, losses.skip_core)
            loss = total_loss(terms_b, weights) / ntrain
            if init:
                loss = loss + opts.l2_init * l2_init_penalty(params, init) * len(b) / ntrain
            loss.backward()
            optim.step()
        sched.step()
        if (epoch + 1) % opts.checkpoint_every == 0 or epoch + 1 == opts.epochs or epoch == start:
            log_epoch(epoch + 1)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    if best is not None:
        model.load_state_dict(best["model"])
        for entry in history:
            entry["kept"] = entry["epoch"] == best["epoch"]
        if best["epoch"] != history[-1]["epoch"]:
            log(f"kept the weights of epoch {best['epoch']} (lowest {'validation' if valid else 'training'} loss)")
    return history
