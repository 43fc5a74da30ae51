"""``deepks-es train`` and ``deepks-es iterate``: from label stores to a checkpoint.

iterate (DeePKS, Chen et al., JCTC 17, 170 (2021), Sec. 2.4; DeePKS-ES, arXiv 2503.24050): for
k = 0 .. N, in ``workdir/iter.kk/``:

    base.h5     SCF + forces + matrices on the training structures with model k-1 (plain PBE for k = 0),
                through the batch labeller (:func:`deepks_es.engine.run_batch`), each SCF started from
                the frame's density in iter.(k-1)/base.h5 (for k = 0: in the config's ``init_density``
                store, if given; else its target label's density; fewer cycles; the convergence check below
                and ``deepks-es eval`` start from PySCF's guess, as users do); frames whose SCF does not
                converge after the retry ladder are dropped from this iteration and listed in the report
    model.pt    trained on (base.h5, targets), warm-started from model k-1 (k < N only)
    check.h5    SCF of the new model on ``check_sample`` training frames: the model is accepted when at
                least ``min_convergence`` of them converge, else retrained from model k-1 with half the
                epochs and learning rate (deepks-kit users saw the convergence rate collapse after an
                overfitted first iteration, its issues #70 and #88)
    report.json convergence rate, dropped frames, the self-consistent errors of model k-1 on the training
                frames (from base.h5; also by cluster size, :func:`deepks_es.evaluate.by_size`), the
                training losses

A step whose output exists is not redone, and training resumes from its checkpoint: a killed run resumes
where it stopped, and raising ``iterate.iterations`` continues a finished run (its final SCF pass becomes
the next iteration's base). The last model is copied to ``workdir/model.pt``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from .config import Config
from .dataset import core_orbitals, geometry_key, load_frames, structure_keys
from .errors import DeePKSInputError
from .output import EV_PER_ANG_PER_AU, HARTREE2EV, KCAL_PER_MOL_PER_HARTREE
from .store import is_failed
from .train import kept_entry, train


def _is_valid(key: str, fraction: float) -> bool:
    """Deterministic split by structure (the same frames are held out in every iteration and seed)."""
    return int(key[:8], 16) / 16**8 < fraction


def split(frames: list, fraction: float) -> tuple[list, list]:
    """(train, valid) frames by :func:`_is_valid` on their geometry key."""
    valid = [f for f in frames if _is_valid(f.key, fraction)]
    return [f for f in frames if not _is_valid(f.key, fraction)], valid


def _new_model(cfg: Config, frames: list):
    from .model import build_model, load_model

    if cfg.init_model:
        return load_model(cfg.init_model), False
    elements = sorted({int(z) for f in frames for z in f.numbers})
    args = {k: v for k, v in cfg.model.items() if k != "kind"}
    return build_model(cfg.model["kind"], elements=elements, **args), True


def reference_level(target_paths) -> dict:
    """What a model was trained to reproduce, for its checkpoint: the target stores' method, basis, xc
    definition, frozen core (ccsd/ccsd(t)), density fitting and program versions (of the first store; train
    and iterate refuse target stores of different methods or bases)."""
    from .store import LabelStore

    meta = LabelStore(target_paths[0]).metadata
    keys = ("method", "basis", "xc", "xc_definition", "frozen_core", "density_fit", "versions", "reference")
    return {k: meta[k] for k in keys if k in meta}


def _save(model, path: Path, cfg: Config, history: list, data: dict) -> str:
    from .model import save_model

    tmp = path.with_suffix(".tmp.pt")
    sha = save_model(
        model,
        tmp,
        basis=cfg.basis,
        xc=cfg.xc,
        density_fit=bool(cfg.scf.density_fit),
        trained=True,
        description=cfg.description,
        training={"config": cfg.plain(), "reference": reference_level(cfg.target), "data": data, "history": history},
    )
    os.replace(tmp, path)
    return sha


def _training_projector(cfg: Config):
    """The projector of the model a config trains: the init model's, or that of a new ``cfg.model``."""
    from .model import MODELS, load_model

    if cfg.init_model:
        return load_model(cfg.init_model).projector
    return MODELS[cfg.model["kind"]].make_projector(cfg.model.get("projector"))


def _load(cfg: Config, base, base_model, keys, log, projector):
    frames, skipped = load_frames(
        base, cfg.target, base_model, keys, projector, level_response=cfg.losses.level_response
    )
    if skipped:
        log(f"{len(skipped)} base frames have no converged target label and are left out: {', '.join(skipped[:5])}")
    if not frames:
        raise DeePKSInputError("no training frames: the base and target stores share no converged structure")
    return frames


def run_train(cfg: Config, seeds=None, log=print, progress=True) -> list:
    """``deepks-es train``: one model per seed from ``cfg.base`` and ``cfg.target``.

    Returns:
        the written checkpoint paths (``workdir/model.pt`` for one seed, ``model.seed<S>.pt`` for several).
    """
    from .model import load_model

    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base_model = load_model(cfg.base_model) if cfg.base_model else None
    keys = structure_keys(cfg.frames) if cfg.frames else None
    frames = _load(cfg, cfg.base, base_model, keys, log, _training_projector(cfg))
    train_frames, valid_frames = split(frames, cfg.train.valid_fraction)
    log(f"{len(train_frames)} training and {len(valid_frames)} validation frames")
    seeds = list(seeds or cfg.seeds)
    paths = []
    for seed in seeds:
        out = workdir / ("model.pt" if len(seeds) == 1 else f"model.seed{seed}.pt")
        if out.is_file():
            log(f"{out} exists; skipped (delete it to retrain)")
            paths.append(out)
            continue
        import torch

        torch.manual_seed(seed)
        model, new = _new_model(cfg, frames)
        opts = replace(cfg.train, prefit=new and cfg.train.prefit, refit_e_shift=not new and cfg.train.refit_e_shift)
        ckpt = workdir / f"train.seed{seed}.ckpt"
        history = train(model, train_frames, valid_frames, opts, cfg.losses, seed, ckpt, log, progress)
        data = {"train": [f.name for f in train_frames], "valid": [f.name for f in valid_frames], "seed": seed}
        sha = _save(model, out, cfg, history, data)
        log(f"wrote {out} (sha256 {sha[:16]}...)")
        paths.append(out)
    return paths


def valence_range(record: dict, n_virt: int = 1) -> slice:
    """Orbital indices of the valence levels of a record: occupied without the chemical cores, plus
    ``n_virt`` virtuals."""
    return slice(core_orbitals(record["numbers"]), int((record["mo_occ"] > 0).sum()) + n_virt)


def scf_errors(records: list, targets: dict, n_virt: int = 1) -> dict:
    """Self-consistent errors of labelled records against target records (same structures, by
    :func:`geometry_key`; records without a target are skipped): :func:`pair_errors`."""
    return pair_errors([(r, targets[k]) for r in records if (k := geometry_key(r)) in targets], n_virt)


def pair_errors(pairs: list, n_virt: int = 1) -> dict:
    """Errors of (record, target record) pairs of the same structures, atomic units in, kcal/mol, eV/Å and eV
    out; the one place the evaluation's error measures are defined (whole sets and per cluster size).

    Returns:
        frames, ``energy_mae_kcal``, ``energy_max_kcal``, ``energy_mse_kcal`` (mean signed) and
        ``energy_std_kcal`` (spread of the signed errors), all per cluster; ``force_rmse_ev_ang``;
        ``eig_rmse_ev`` (valence: occupied without the 1s cores, plus n_virt virtuals), ``occ_shift_ev`` (mean
        signed error of the valence occupied levels: a common shift of them all shows here, not in the gap),
        ``lumo_mae_ev`` and ``lumo_mse_ev`` (mean signed), ``gap_mae_ev``, ``core_mae_ev`` (1s core levels);
        keys without data (no pair, no forces or orbital energies on both sides) are left out.
    """
    de, df, deig, docc, dlumo, dgap, dcore = [], [], [], [], [], [], []
    for rec, t in pairs:
        de.append(rec["e_tot"] - t["e_tot"])
        if rec.get("forces") is not None and t.get("forces") is not None:
            df.append((rec["forces"] - t["forces"]).ravel())
        if rec.get("mo_energy") is not None and t.get("mo_energy") is not None:
            valence = valence_range(rec, n_virt)
            nocc = valence.stop - n_virt
            e, et = rec["mo_energy"], t["mo_energy"]
            deig.append((e - et)[valence])
            docc.append((e - et)[valence.start : nocc])
            dlumo.append(e[nocc] - et[nocc])
            dcore.append((e - et)[: valence.start])
            dgap.append((e[nocc] - e[nocc - 1]) - (et[nocc] - et[nocc - 1]))
    out = {"frames": len(de)}
    if de:
        de = np.array(de) * KCAL_PER_MOL_PER_HARTREE
        out.update(energy_mae_kcal=float(np.abs(de).mean()), energy_max_kcal=float(np.abs(de).max()))
        out.update(energy_mse_kcal=float(de.mean()), energy_std_kcal=float(de.std()))
    if df:
        out["force_rmse_ev_ang"] = float(np.sqrt(np.mean(np.concatenate(df) ** 2)) * EV_PER_ANG_PER_AU)
    if deig:
        out["eig_rmse_ev"] = float(np.sqrt(np.mean(np.concatenate(deig) ** 2)) * HARTREE2EV)
        out["occ_shift_ev"] = float(np.concatenate(docc).mean() * HARTREE2EV)
        out["lumo_mae_ev"] = float(np.abs(dlumo).mean() * HARTREE2EV)
        out["lumo_mse_ev"] = float(np.mean(dlumo) * HARTREE2EV)
        out["gap_mae_ev"] = float(np.abs(dgap).mean() * HARTREE2EV)
        core = np.concatenate(dcore)
        if core.size:
            out["core_mae_ev"] = float(np.abs(core).mean() * HARTREE2EV)
    return out


def target_records(paths) -> dict:
    """Converged records of the target store(s) by :func:`geometry_key` (orbitals where they are targets, no
    matrices: :func:`deepks_es.dataset.target_records`)."""
    from .dataset import target_records as references

    out = {}
    for p in paths:
        out.update({geometry_key(r): r for r in references(p)})
    return out


def run_labels(frames, store_path, method: str, model_path=None, progress=True, log=print, guesses=None, **spec):
    """Label ``frames`` into the resumable store ``store_path`` with the batch labeller.

    Args:
        method: a :data:`deepks_es.methods.METHODS` name; ``model_path`` for ``deepks``.
        guesses: initial densities, as :func:`deepks_es.engine.run_batch`.
        spec: further :class:`~deepks_es.methods.LabelSpec` fields (basis, forces, save_matrices, scf).

    Returns:
        the :class:`~deepks_es.store.LabelStore`.
    """
    from .engine import run_batch
    from .methods import LabelSpec
    from .store import LabelStore

    spec = LabelSpec(method=method, model_paths=[str(model_path)] if model_path else [], **spec).validate()
    store = LabelStore(store_path, spec.metadata())
    run_batch(frames, spec, store, progress=progress, log=log, guesses=guesses)
    return store


def _label(frames, cfg: Config, store_path: Path, model_path, log, progress, starts=(), response=True):
    """SCF with forces and matrices (and, with losses.level_response and ``response``, the levels'
    response): plain base functional, or deepks with ``model_path``; each SCF starts from the converged
    density of the same structure in the last of the stores ``starts`` that has one (those missing here
    are skipped), else from PySCF's guess."""
    from .store import LabelStore

    guesses = {}
    for path in (Path(p) for p in starts if p):
        if path.is_file():
            guesses.update({geometry_key(r): (str(path), r["key"]) for r in LabelStore(path).records(matrices=False)})
    method = "deepks" if model_path else cfg.xc.lower()
    spec = dict(
        basis=cfg.basis,
        forces=True,
        save_matrices=True,
        save_response=response and cfg.losses.level_response,
        scf=cfg.scf,
    )
    return run_labels(frames, store_path, method, model_path, progress=progress, log=log, guesses=guesses, **spec)


def convergence(records: list) -> tuple[float, list]:
    """(fraction of records converged and not failed (:func:`~deepks_es.store.is_failed`: an error or a
    non-finite energy), names of the others) of store records."""
    bad = [r["name"] for r in records if is_failed(r) or not r["converged"]]
    return (1.0 - len(bad) / len(records)) if records else 0.0, bad


def all_records(store) -> list:
    return store.records(include_unconverged=True, include_failed=True, matrices=False)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def run_iterate(cfg: Config, log=print, progress=True, stop_after: int | None = None) -> Path:
    """``deepks-es iterate``: see the module docstring. Returns ``workdir/model.pt``.

    ``stop_after`` K: stop once model K is trained and checked (0 <= K < ``iterate.iterations``), before the
    SCF pass of iteration K+1, so that model K can be evaluated first; a later run without it continues.
    Raises DeePKSInputError for K outside that range."""
    from .evaluate import by_size
    from .structures import read_frames

    it = cfg.iterate
    n = it.iterations
    if stop_after is not None and not 0 <= stop_after < n:
        raise DeePKSInputError(
            f"iterate: --stop-after {stop_after} is not a trained iteration (0 .. {n - 1}, iterate.iterations {n})"
        )
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    structures = [f for f in read_frames(cfg.frames, check=False) if not f.error]
    seed = cfg.seeds[0]
    model_path = Path(cfg.init_model) if cfg.init_model else None
    log(f"iterate: {len(structures)} structures, {n} iterations, workdir {workdir}")
    for k in range(n + 1 if stop_after is None else stop_after + 1):
        # the structures with a target label now (labels may still be accumulating in the target store)
        targets = target_records(cfg.target)
        frames = [f for f in structures if geometry_key(f) in targets]
        if not frames:
            raise DeePKSInputError("iterate: none of the frames has a converged label in the target store(s)")
        rng = np.random.default_rng(seed + k)
        check = [frames[i] for i in sorted(rng.permutation(len(frames))[: it.check_sample])]
        d = workdir / f"iter.{k:02d}"
        d.mkdir(exist_ok=True)
        report_path = d / "report.json"
        # done before, unless it was the final pass of a run with fewer iterations (then it trains now)
        report = json.loads(report_path.read_text()) if report_path.is_file() else None
        if report is not None and (k == n or report.get("model")):
            model_path = workdir / report["model"] if report.get("model") else model_path
            log(f"iteration {k}: done before (convergence {report['convergence']:.3f})")
            continue
        who = "plain " + cfg.xc if model_path is None else model_path.name
        log(f"iteration {k}: SCF with {who} on {len(frames)} structures with target labels")
        previous = workdir / f"iter.{k - 1:02d}" / "base.h5" if k else cfg.init_density and Path(cfg.init_density)
        if previous and not previous.is_file():
            log(f"iteration {k}: no densities in {previous} (not stored here); starting from the targets' densities")
        # the target label's density where the last iteration's is missing (a new machine): closer than
        # PySCF's guess (stage 7: ~11 cycles at 4-12 waters against 13 cold; the last iteration's gave 7.9)
        base = _label(frames, cfg, d / "base.h5", model_path, log, progress, [*cfg.target, previous])
        every = all_records(base)
        rate, dropped = convergence(every)
        records = base.records(matrices=False)
        errors = scf_errors(records, targets, cfg.losses.n_virt)
        log(
            f"iteration {k}: SCF convergence {rate:.3f} ({len(dropped)} dropped), errors of "
            + ("the base functional" if model_path is None else "the model")
            + f": energy MAE {errors.get('energy_mae_kcal', float('nan')):.3f} kcal/mol"
            + (f", force RMSE {errors['force_rmse_ev_ang']:.4f} eV/A" if "force_rmse_ev_ang" in errors else "")
            + (f", eig RMSE {errors['eig_rmse_ev']:.4f} eV" if "eig_rmse_ev" in errors else "")
        )
        # the input model relative to the workdir, like "model" below: no machine path in a committed report
        model_in = os.path.relpath(model_path, workdir) if model_path else None
        report = {"iteration": k, "model_in": model_in, "convergence": rate}
        # the pass's time as the sum of its frames' SCF + forces wall times: true across a resumed pass
        report.update(dropped=dropped, scf_errors=errors, scf_wall_s=sum(r["wall_s"] for r in every))
        report["cycles_mean"] = float(np.mean([r["cycles"] for r in records])) if records else None
        pairs = [(r, targets[geometry_key(r)]) for r in records if geometry_key(r) in targets]
        report["by_size"] = {n: row["scf"] for n, row in by_size({"scf": pairs}).items()}
        if k < n:
            report.update(_train_step(cfg, k, d, base, model_path, check, log, progress))
            model_path = workdir / report["model"]
        _write_json(report_path, report)
        (workdir / "iterations.md").write_text(iteration_table(workdir) + "\n")
    final = workdir / "model.pt"
    shutil.copyfile(model_path, final)
    table = iteration_table(workdir)
    (workdir / "iterations.md").write_text(table + "\n")
    log(table)
    log(f"wrote {final} (the table above: {workdir / 'iterations.md'})")
    if stop_after is not None:
        log(
            f"stopped after model {stop_after} (--stop-after): rerun without it"
            f" for the SCF pass of iteration {stop_after + 1}"
        )
    return final


def iteration_table(workdir) -> str:
    """Markdown table of an iterate run from its ``iter.kk/report.json``: per iteration the SCF model,
    frames, convergence, mean SCF cycles, and the self-consistent errors on the training structures
    (E MAE per cluster, mean signed energy error per water over all frames, F RMSE, valence + n_virt
    orbital energy RMSE, the occupied valence levels' mean signed error, gap MAE) and the SCF pass's time
    (the sum of its frames' wall times, so a pass resumed after a kill counts its earlier part too)."""
    head = (
        "| iteration | SCF with | frames | SCF conv. | cycles (mean) | E MAE (kcal/mol) | E error per water "
        "(kcal/mol) | F RMSE (eV/Å) | valence eig RMSE (eV) | occupied valence mean error (eV) | gap MAE (eV) | "
        "SCF pass (min) |"
    )
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for path in sorted(Path(workdir).glob("iter.*/report.json")):
        r = json.loads(path.read_text())
        e, sizes = r["scf_errors"], r.get("by_size", {}).values()
        n = sum(s["frames"] for s in sizes)
        per_water = sum(s["frames"] * s["mse_per_water_kcal"] for s in sizes) / n if n else None

        def cell(value, fmt):
            return "–" if value is None else format(value, fmt)

        lines.append(
            "| "
            + " | ".join(
                [
                    str(r["iteration"]),
                    "/".join(Path(r["model_in"]).parts[-2:]) if r["model_in"] else "base functional",
                    str(e.get("frames", 0)),
                    cell(r["convergence"], ".3f"),
                    cell(r.get("cycles_mean"), ".1f"),
                    cell(e.get("energy_mae_kcal"), ".3f"),
                    cell(per_water, "+.3f"),
                    cell(e.get("force_rmse_ev_ang"), ".4f"),
                    cell(e.get("eig_rmse_ev"), ".4f"),
                    cell(e.get("occ_shift_ev"), "+.4f"),
                    cell(e.get("gap_mae_ev"), ".4f"),
                    cell(r.get("scf_wall_s", 0) / 60, ".1f"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _train_step(cfg, k, d: Path, base, model_path, check, log, progress) -> dict:
    """Train model k (warm start from ``model_path``), check its SCF convergence on ``check``."""
    import torch

    from .model import load_model

    it = cfg.iterate
    base_model = load_model(model_path) if model_path else None
    # the model trained here warm-starts from the base model, or is new
    projector = base_model.projector if base_model is not None else _training_projector(cfg)
    frames = _load(cfg, base, base_model, None, log, projector)
    train_frames, valid_frames = split(frames, cfg.train.valid_fraction)
    epochs = it.epochs[k] if k < len(it.epochs) else cfg.train.epochs
    seed = cfg.seeds[0]
    for attempt in range(it.retries + 1):
        out = d / ("model.pt" if attempt == 0 else f"model.retry{attempt}.pt")
        scale = 0.5**attempt  # a retry after a failed convergence check: gentler and shorter
        lr_scale = scale * (it.restart_lr if base_model is not None else 1.0)  # warm start: smaller steps
        if not out.is_file():
            torch.manual_seed(seed)
            if base_model is not None:
                model, new = load_model(model_path), False
            else:
                model, new = _new_model(cfg, frames)
            t = cfg.train
            opts = replace(
                t,
                epochs=max(1, int(epochs * scale)),
                lr=t.lr * lr_scale,
                lr_final=t.lr_final * lr_scale,
                prefit=new and t.prefit,
                # every warm start meets its targets at a new density (init_model: also a new method); the
                # constant part of the change, the relaxation energy per atom, goes into the energy shift
                refit_e_shift=t.refit_e_shift and base_model is not None,
            )
            ckpt = d / f"train.{attempt}.ckpt"
            history = train(model, train_frames, valid_frames, opts, cfg.losses, seed, ckpt, log, progress)
            data = {"iteration": k, "train": len(train_frames), "valid": len(valid_frames), "seed": seed}
            _save(model, out, cfg, history, data)
        history = load_model(out).settings["training"]["history"]
        rate = 1.0
        if check:
            check_store = _label(check, cfg, d / f"check.{attempt}.h5", out, log, False, response=False)
            rate, _ = convergence(all_records(check_store))
        log(f"iteration {k}: model {out.name}: SCF convergence on {len(check)} check frames {rate:.3f}")
        if rate >= it.min_convergence:
            # relative to the workdir: a workdir copied to another machine or path resumes where it was
            return {
                "model": str(out.relative_to(d.parent)),
                "check_convergence": rate,
                "attempts": attempt + 1,
                "train": kept_entry(history),
            }
        log(f"iteration {k}: below iterate.min_convergence {it.min_convergence}; retraining gentler")
    raise DeePKSInputError(
        f"iteration {k}: no model passed the SCF convergence check after {it.retries} retries; "
        "lower train.lr or iterate.epochs, or raise the weight of the energy/force terms"
    )
