"""Energy error per water against cluster size over several held-out sets, in one plot (issue #12's
size-extensivity measure, README.md "The default model").

Reads the ``by_size`` part of ``deepks-es eval`` results (``eval.json``): per set, the model's mean signed
total-energy error per water (kcal/mol) at each size, with its spread over the clusters of that size as an
error bar; a grey band marks issue #12's target, |error per water| <= 0.01 kcal/mol.

    python data/train/plot_per_water.py OUT.png LABEL=EVAL.json [LABEL=EVAL.json ...]

Sets of the same label are drawn as one series. The README plot of stage 7 is step 4 of
``data/train/RECIPE_STAGE7.sh``.
"""

import argparse
import json

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGET_KCAL = 0.01  # issue #12: |mean signed error per water| at every size


def per_water(results: list, run: str = "DeePKS") -> tuple:
    """(sizes, mean signed error per water, its spread) in kcal/mol of ``run`` over ``eval.json`` results."""
    rows = {int(n): row[run] for r in results for n, row in r["by_size"].items() if run in row}
    sizes = sorted(rows)
    return sizes, [rows[n]["mse_per_water_kcal"] for n in sizes], [rows[n]["std_per_water_kcal"] for n in sizes]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("sets", nargs="+", metavar="LABEL=EVAL.json")
    args = parser.parse_args(argv)
    series = {}
    for item in args.sets:
        label, sep, path = item.rpartition("=")
        if not sep:
            parser.error(f"{item!r}: give LABEL=EVAL.json")
        try:
            with open(path) as fh:
                result = json.load(fh)
        except (OSError, ValueError) as exc:
            parser.error(f"{path}: not a readable deepks-es eval result (eval.json): {exc!r}")
        if not isinstance(result, dict) or "by_size" not in result:
            parser.error(f"{path}: has no by_size part; give an eval.json that deepks-es eval wrote")
        series.setdefault(label, []).append(result)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for shift, (label, results) in enumerate(series.items()):
        sizes, mean, spread = per_water(results)
        x = [n + 0.15 * (shift - (len(series) - 1) / 2) for n in sizes]  # side by side at equal sizes
        ax.errorbar(x, mean, yerr=spread, fmt="o-", capsize=3, label=label)
    ax.axhspan(-TARGET_KCAL, TARGET_KCAL, color="0.85", zorder=0, label="target ±0.01")
    ax.axhline(0, color="k", lw=0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="waters in cluster", ylabel="mean signed E error per water (kcal/mol)")
    ax.set_title("DeePKS against the eval target, held out", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
