"""``deepks-es eval MODEL STORE``: self-consistent errors of a model and of its base functional against a
target label store, as a table and PNG plots.

The model's SCF (with forces) and the plain base functional's run on every converged structure of the target
store through the batch labeller, into resumable stores in the output folder (the base functional's into
``--base`` where given: what it holds is reused, what it lacks is computed into it). Errors
(:func:`deepks_es.workflow.pair_errors`): total-energy MAE per cluster, force RMSE, valence orbital-energy
RMSE (occupied without the 1s cores, plus the LUMO) and two of its parts (the mean signed error of the
occupied valence levels, which a common shift of them all shows as, and the LUMO MAE), gap MAE, 1s
core-level MAE, the SCF convergence rate, the mean number of SCF cycles and the most cycles the model needs
beyond the base functional on one structure.

By cluster size (:func:`by_size`, issue #12's size-extensivity test): per number of waters, the energy
MAE per cluster, the mean signed energy error per water and its spread, the force RMSE, the mean signed
LUMO error and the gap MAE.

Plots: ``parity_forces.png``, ``parity_orbitals.png`` (valence + LUMO), ``energy_errors.png`` (per
cluster vs size), ``energy_per_water.png`` (mean signed error per water vs size), ``dos.png``
(Gaussian-broadened orbital energies of one structure: base / model / target) and
``training_curves.png`` (from the history stored in the checkpoint, when there is one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .dataset import geometry_key, structure_keys, target_records
from .output import EV_PER_ANG_PER_AU, HARTREE2EV, KCAL_PER_MOL_PER_HARTREE
from .settings import DEFAULT_XC
from .store import is_failed
from .structures import frame_from_record
from .workflow import all_records, convergence, pair_errors, run_labels, valence_range

COLUMNS = [
    ("frames", "frames", "{:d}"),
    ("convergence", "SCF conv.", "{:.3f}"),
    ("energy_mae_kcal", "E MAE (kcal/mol)", "{:.3f}"),
    ("force_rmse_ev_ang", "F RMSE (eV/Å)", "{:.4f}"),
    ("eig_rmse_ev", "valence eig RMSE (eV)", "{:.4f}"),
    ("occ_shift_ev", "occupied valence mean error (eV)", "{:+.4f}"),
    ("lumo_mae_ev", "LUMO MAE (eV)", "{:.4f}"),
    ("gap_mae_ev", "gap MAE (eV)", "{:.4f}"),
    ("core_mae_ev", "O 1s MAE (eV)", "{:.3f}"),
    ("cycles_mean", "SCF cycles (mean)", "{:.1f}"),
    ("cycles_over_base_max", "cycles over base (max)", "{:+d}"),
]


def _records(store, targets: dict) -> list:
    """The store's records of the target structures, unconverged and failed ones included (one read)."""
    return [r for r in all_records(store) if geometry_key(r) in targets]


def _row(records: list, targets: dict) -> dict:
    """One table row: the convergence rate over all ``records`` and the errors of the :func:`_paired` ones."""
    rate, _ = convergence(records)
    pairs = _paired(records, targets)
    cycles = [r["cycles"] for r, _ in pairs if r.get("cycles") is not None]
    return {
        "convergence": rate,
        **pair_errors(pairs),
        **({"cycles_mean": float(np.mean(cycles))} if cycles else {}),
    }


def cycles_over_base(base_records: list, model_records: list) -> int | None:
    """Largest number of SCF cycles the model's run needs beyond the base functional's on the same structure
    (both started from the same guess; issue #12's target: at most 2), or None without common structures."""
    base_cycles = {geometry_key(r): r.get("cycles") for r in base_records if r["converged"]}
    extra = [
        r["cycles"] - base_cycles[k]
        for r in model_records
        if r["converged"] and base_cycles.get(k := geometry_key(r)) is not None and r.get("cycles") is not None
    ]
    return int(max(extra)) if extra else None


def table(rows: dict) -> str:
    """Markdown table, one row per method."""
    head = "| | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows.items():
        cells = [fmt.format(row[key]) if key in row else "–" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def waters(record) -> int:
    """Cluster size of a water frame: its number of O atoms."""
    return int(np.count_nonzero(np.asarray(record["numbers"]) == 8))


def by_size(runs: dict) -> dict:
    """Errors per cluster size (:func:`deepks_es.workflow.pair_errors` of each size's pairs): a size-extensive
    error shows as a mean signed error per water that does not depend on the size (issue #12), a LUMO that
    the correction reaches less well in larger clusters as a mean signed LUMO error that grows with the size.

    Args:
        runs: ``{run name: [(record, target record), ...]}``, converged pairs (atomic units).

    Returns:
        ``{waters: {run name: pair_errors + {"mse_per_water_kcal" (mean signed energy error per water),
        "std_per_water_kcal" (its spread over the clusters)}}}``, sizes ascending; a size a run has no frame of
        is left out of that run, and the force and level keys where the records have no forces or levels.
    """
    out = {}
    for name, pairs in runs.items():
        for n in sorted({waters(r) for r, _ in pairs}):
            row = pair_errors([(r, t) for r, t in pairs if waters(r) == n])
            row.update(mse_per_water_kcal=row["energy_mse_kcal"] / n, std_per_water_kcal=row["energy_std_kcal"] / n)
            out.setdefault(n, {})[name] = row
    return dict(sorted(out.items()))


def size_table(sizes: dict) -> str:
    """Markdown table of :func:`by_size`: one row per size, per run E MAE, mean signed error per water (±
    its spread), F RMSE, mean signed LUMO error and gap MAE."""
    names = list(dict.fromkeys(name for row in sizes.values() for name in row))
    columns = ("E MAE (kcal/mol)", "E error per water (kcal/mol)", "F RMSE (eV/Å)", "LUMO error (eV)", "gap MAE (eV)")
    head = ["waters", "frames"] + [f"{n} {c}" for n in names for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for n, row in sizes.items():
        cells = [str(n), str(max(r["frames"] for r in row.values()))]
        for name in names:
            r = row.get(name)
            if r is None:
                cells += ["–"] * len(columns)
                continue
            cells += [f"{r['energy_mae_kcal']:.3f}", f"{r['mse_per_water_kcal']:+.3f} ± {r['std_per_water_kcal']:.3f}"]
            for key, fmt in (("force_rmse_ev_ang", ".4f"), ("lumo_mse_ev", "+.3f"), ("gap_mae_ev", ".3f")):
                cells.append(format(r[key], fmt) if key in r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_model(model_path, target_path, outdir, base_path=None, frames=None, scf=None, progress=True) -> dict:
    """Run and compare (see the module docstring).

    Args:
        base_path: a store of the base functional (same basis and SCF settings) to reuse: the structures it
            lacks are computed into it (default: ``outdir/<xc>.h5``).
        frames: optional structure files/folders: only the target records of these structures are used
            (e.g. a held-out set inside a larger store).
        scf: :class:`~deepks_es.settings.SCFSettings` of both SCF runs (default: its defaults; density
            fitting, when not given, as the model was trained: :meth:`~deepks_es.settings.SCFSettings.for_model`).

    Returns:
        ``{"rows": {base name: errors, "model": errors}, "table": markdown, "by_size": :func:`by_size`,
        "size_table": markdown, "plots": [paths]}``; also written to ``outdir/eval.json`` and
        ``outdir/eval.md``.

    Raises:
        DeePKSInputError: unreadable model or stores, a target store with no converged record, a base store
            made with other settings (method, basis, grid, ...), a model for another basis, an output folder
            that cannot be written.
    """
    from .errors import DeePKSInputError
    from .model import load_model
    from .output import check_output_path
    from .settings import SCFSettings
    from .store import LabelStore

    outdir = Path(outdir)
    check_output_path(outdir, "--out", folder=True)
    model = load_model(model_path)
    scf = (scf or SCFSettings()).validate().for_model(model)  # the base runs on the model's base
    target_store = LabelStore(target_path)
    records = target_records(target_store)
    if frames:
        keep = structure_keys(frames)
        records = [r for r in records if geometry_key(r) in keep]
    if not records:
        raise DeePKSInputError(f"target store {target_path} has no converged record (of the --frames given)")
    targets = {geometry_key(r): r for r in records}
    forces = all(r["forces"] is not None for r in records)
    frames = [frame_from_record(r) for r in records]
    basis = target_store.metadata["basis"]
    model.check_compatible(basis=basis)
    xc = (model.settings.get("xc") or DEFAULT_XC).upper()
    sha = model.settings["sha256"][:12]
    run = dict(progress=progress, basis=basis, forces=forces, scf=scf)
    # the base first: a --base store of other settings is refused (LabelStore's identity check) before any
    # compute, and the structures it lacks are computed into it, so both rows cover the same structures
    base = run_labels(frames, base_path or outdir / f"{xc.lower()}.h5", xc.lower(), **run)
    corrected = run_labels(frames, outdir / f"deepks_{sha}.h5", "deepks", model_path, **run)
    base_records, model_records = _records(base, targets), _records(corrected, targets)
    rows = {xc: _row(base_records, targets), "DeePKS": _row(model_records, targets)}
    extra = cycles_over_base(base_records, model_records)
    if extra is not None:
        rows["DeePKS"]["cycles_over_base_max"] = extra
    text = table(rows)
    runs = {xc: _paired(base_records, targets), "DeePKS": _paired(model_records, targets)}
    sizes = by_size(runs)
    plots = _plots(outdir, model, runs, targets, xc)
    result = {"model": str(model_path), "model_sha256": model.settings["sha256"], "target": str(target_path)}
    result.update(rows=rows, table=text, by_size=sizes, size_table=size_table(sizes), plots=[str(p) for p in plots])
    (outdir / "eval.json").write_text(json.dumps(result, indent=1))
    (outdir / "eval.md").write_text(text + "\n\nBy cluster size:\n\n" + result["size_table"] + "\n")
    return result


def _paired(records: list, targets: dict) -> list:
    """(record, target record) of the converged, not failed records (as ``LabelStore.records`` keeps)."""
    return [(r, targets[geometry_key(r)]) for r in records if r["converged"] and not is_failed(r)]


def _plots(outdir: Path, model, runs: dict, targets, xc) -> list:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    paths = []

    def parity(values, unit: float, xlabel: str, ylabel: str, title: str, name: str):
        """Predicted against target for both runs; ``values(record, target)`` -> (predicted, target) arrays
        or None, in atomic units (scaled by ``unit``)."""
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for label, pairs in runs.items():
            got = [v for v in (values(r, t) for r, t in pairs) if v is not None]
            if got:
                predicted, target = (np.concatenate(x) * unit for x in zip(*got))
                ax.scatter(target, predicted, s=3, label=label)
        lim = ax.get_xlim()
        ax.plot(lim, lim, "k-", lw=0.5)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend()
        paths.append(_save(fig, outdir / name))

    def forces(r, t):
        return None if r["forces"] is None else (r["forces"].ravel(), t["forces"].ravel())

    def orbitals(r, t):
        valence = valence_range(r)
        return r["mo_energy"][valence], t["mo_energy"][valence]

    f_unit = EV_PER_ANG_PER_AU
    parity(forces, f_unit, "target force (eV/Å)", "predicted force (eV/Å)", "forces", "parity_forces.png")
    labels = ("target orbital energy (eV)", "predicted (eV)", "valence orbitals + LUMO")
    parity(orbitals, HARTREE2EV, *labels, "parity_orbitals.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, pairs in runs.items():
        n = [waters(r) for r, _ in pairs]
        err = [(r["e_tot"] - t["e_tot"]) * KCAL_PER_MOL_PER_HARTREE for r, t in pairs]
        ax.scatter(n, err, s=8, label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="waters in cluster", ylabel="E - E_target (kcal/mol)", title="total energy error")
    ax.legend()
    paths.append(_save(fig, outdir / "energy_errors.png"))

    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.5))
    for ax, name in zip(np.atleast_1d(axes), runs):  # one panel per run: PBE's errors are ~100x the model's
        sizes = by_size({name: runs[name]})
        n = list(sizes)
        mean = [sizes[k][name]["mse_per_water_kcal"] for k in n]
        ax.errorbar(n, mean, yerr=[sizes[k][name]["std_per_water_kcal"] for k in n], fmt="o-", capsize=3)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="waters in cluster", ylabel="mean signed E error per water (kcal/mol)", title=name)
    paths.append(_save(fig, outdir / "energy_per_water.png"))

    largest = max(runs["DeePKS"], key=lambda p: len(p[0]["numbers"]), default=None)
    if largest is not None:
        key = geometry_key(largest[0])
        fig, ax = plt.subplots(figsize=(6, 3.5))
        grid = np.linspace(-45, 10, 1500)
        spectra = {xc: next((r for r, _ in runs[xc] if geometry_key(r) == key), None), "DeePKS": largest[0]}
        spectra["target"] = targets[key]
        for name, rec in spectra.items():
            if rec is None:
                continue
            e = rec["mo_energy"] * HARTREE2EV
            ax.plot(grid, np.exp(-(((grid[:, None] - e[None]) / 0.3) ** 2)).sum(1), label=name)
        ax.set(xlabel="orbital energy (eV)", ylabel="DOS (arb.)", title=f"DOS, {largest[0]['name']} (σ = 0.3 eV)")
        ax.legend()
        paths.append(_save(fig, outdir / "dos.png"))

    history = (model.settings.get("training") or {}).get("history") or []
    if history:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        ep = [h["epoch"] for h in history]
        for split in ("train", "valid"):
            if split in history[0]:
                axes[0].semilogy(ep, [h[split]["loss"] for h in history], label=f"{split} loss")
                if "force_rmse_ev_ang" in history[0][split]:
                    axes[1].semilogy(
                        ep, [h[split]["force_rmse_ev_ang"] for h in history], label=f"{split} F RMSE (eV/Å)"
                    )
                axes[1].semilogy(
                    ep, [h[split]["energy_mae_kcal"] for h in history], "--", label=f"{split} E MAE (kcal/mol)"
                )
        for a in axes:
            a.set_xlabel("epoch")
            a.legend(fontsize=7)
        axes[0].set_title("training loss")
        axes[1].set_title("errors at the base density")
        paths.append(_save(fig, outdir / "training_curves.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
