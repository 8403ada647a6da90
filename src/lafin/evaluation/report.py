"""Aggregation and everything that writes or shows the results of ``lafin evaluate``: the
metrics' display (:class:`Metric`, :data:`METRICS`), per-bin means, the Markdown tables, the
per-metric plots, the best/worst grid figure, results.json, report.md and the printed tables.

:mod:`lafin.evaluation.runner` runs the evaluation and hands its results dictionary here.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lafin.evaluation import metrics as M
from lafin.landmarks import EXPRESSION_NAMES

log = logging.getLogger(__name__)

CENTRE = "centre"  # the centre block's bin label (runner.py's other bins are hole ratios)


def fidelity_key(expression: str | None) -> str:
    """The results key of landmark fidelity with the true landmarks (None) or an edit of them."""
    return "lm_fidelity" if expression is None else "lm_fidelity_" + expression.replace(" ", "_")


@dataclass(frozen=True)
class Metric:
    """How a metric is shown: ``scale`` multiplies the stored value (e.g. 100 for percent)."""

    key: str
    header: str
    digits: int
    higher_is_better: bool
    scale: float = 1.0
    per_case: bool = True
    stat: str = "mean"  # the aggregate shown: "mean" or "median" (of the per-case values)
    target: float | None = None  # the ideal value, when neither higher nor lower is better
    show_std: bool = False  # show "value ± std" (KID: the spread over its subsets)

    def better(self) -> str:
        if self.target is not None:
            return f"closest to {self.target:g} is best"
        return f"{'higher' if self.higher_is_better else 'lower'} is better"


METRICS = [
    Metric("psnr", "PSNR (dB)", 2, True),
    Metric("ssim", "SSIM", 4, True),
    Metric("l1_hole", "L1 hole (%)", 2, False, 100.0),
    Metric("lpips", "LPIPS", 4, False),
    Metric("fid", "FID", 2, False, per_case=False),
    Metric("kid", "KID ×10³", 2, False, 1000.0, per_case=False, show_std=True),
    Metric("detail_ratio", "Detail ratio (median)", 3, True, stat="median", target=1.0),
    Metric("mid_detail_ratio", "Mid-band detail (median)", 3, True, stat="median", target=1.0),
    Metric("nme", "NME (%)", 2, False, 100.0),
    Metric("nme_failure", "NME fail@8% (%)", 1, False, 100.0, per_case=False),
    Metric("landmark_consistency", "LM consistency (%)", 2, False, 100.0),
    Metric("identity", "ID distance", 3, False),
    Metric("identity_lost", "ID lost (%)", 1, False, 100.0, per_case=False),
    Metric("lm_fidelity", "LM fidelity (%)", 2, False, 100.0),
] + [Metric(fidelity_key(name), f"LM fidelity {name} (%)", 2, False, 100.0) for name in EXPRESSION_NAMES]
METRIC_BY_KEY = {m.key: m for m in METRICS}


# ------------------------------------------------------------------------------ aggregation


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _summary(values: list[float]) -> dict[str, Any]:
    finite = _finite(values)
    out: dict[str, Any] = {"n": len(finite)}
    if finite:
        out["mean"] = float(np.mean(finite))
        out["std"] = float(np.std(finite))
        out["median"] = float(np.median(finite))
    if len(finite) != len(values):
        out["n_not_finite"] = len(values) - len(finite)
    return out


def aggregate(
    cases: list[dict],
    bins: list[str],
    methods: list[str],
    fid: dict[tuple[str, str], float | None],
    kid: dict[tuple[str, str], dict[str, Any] | None] | None = None,
) -> dict[str, dict[str, dict]]:
    result: dict[str, dict[str, dict]] = {}
    for b in bins:
        result[b] = {}
        for m in methods:
            rows = [c for c in cases if c["bin"] == b and c["method"] == m]
            entry: dict[str, Any] = {
                "cases": len(rows),
                "hole_ratio": _summary([c["hole_ratio"] for c in rows]),
            }
            for metric in METRICS:
                if not metric.per_case:
                    continue
                values = [c[metric.key] for c in rows if c.get(metric.key) is not None]
                if values:
                    entry[metric.key] = _summary(values)
            nmes = _finite([c["nme"] for c in rows if c.get("nme") is not None])
            if nmes:
                entry["nme_failure"] = {
                    "mean": M.failure_rate(nmes),
                    "n": len(nmes),
                    "threshold": M.NME_FAILURE_THRESHOLD,
                }
            ids = _finite([c["identity"] for c in rows if c.get("identity") is not None])
            if ids:
                entry["identity_lost"] = {
                    "mean": float(np.mean(np.array(ids) > M.IDENTITY_THRESHOLD)),
                    "n": len(ids),
                    "threshold": M.IDENTITY_THRESHOLD,
                }
            value = fid.get((b, m))
            if value is not None:
                entry["fid"] = {"mean": value, "n": len(rows)}
            kid_value = (kid or {}).get((b, m))
            if kid_value is not None:
                entry["kid"] = kid_value
            result[b][m] = entry
    return result


def shown_value(entry: dict, metric: Metric) -> float | None:
    """The aggregate a table or plot shows for one bin and method (None when absent)."""
    value = entry.get(metric.key, {}).get(metric.stat)
    return None if value is None else float(value)


def _cell(entry: dict, metric: Metric) -> str:
    value = shown_value(entry, metric)
    if value is None:
        return "—"
    text = f"{value * metric.scale:.{metric.digits}f}"
    std = entry[metric.key].get("std")
    if metric.show_std and std is not None:
        text += f" ± {std * metric.scale:.{metric.digits}f}"
    return text


def _best(values: list[float], metric: Metric) -> float:
    if metric.target is not None:
        return min(values, key=lambda v: abs(v - metric.target))
    return max(values) if metric.higher_is_better else min(values)


def tables(agg: dict, bins: list[str], methods: list[str], shown: list[Metric]) -> dict[str, str]:
    """A markdown table per bin: one row per method, the best value of each column in bold."""
    out = {}
    for b in bins:
        header = "| method | " + " | ".join(m.header for m in shown) + " |"
        lines = [header, "|---|" + "---:|" * len(shown)]
        best: dict[str, float] = {}
        for metric in shown:
            vals = [v for m in methods if (v := shown_value(agg[b][m], metric)) is not None]
            if len(vals) > 1:
                best[metric.key] = _best(vals, metric)
        for m in methods:
            cells = []
            for metric in shown:
                text = _cell(agg[b][m], metric)
                if metric.key in best and shown_value(agg[b][m], metric) == best[metric.key]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        out[b] = "\n".join(lines)
    return out


# ------------------------------------------------------------------------------ figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(
    agg: dict, bins: list[str], methods: list[str], shown: list[Metric], out_dir: Path
) -> list[Path]:
    """One PNG per metric: value vs hole ratio, a line per method over the ratio bins and a
    square marker for the centre block (at its hole ratio)."""
    plt = _pyplot()
    written = []
    ratio_bins = [b for b in bins if b != CENTRE]
    for metric in shown:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        drawn = False
        for k, m in enumerate(methods):
            color = f"C{k}"
            xs, ys = [], []
            for b in ratio_bins:
                value = shown_value(agg[b][m], metric)
                if value is not None:
                    xs.append(100 * agg[b][m]["hole_ratio"].get("mean", 0.0))
                    ys.append(value * metric.scale)
            if xs:
                ax.plot(xs, ys, "o-", color=color, label=m)
                drawn = True
            centre = shown_value(agg[CENTRE][m], metric) if CENTRE in bins else None
            if centre is not None:
                ax.plot(
                    [100 * agg[CENTRE][m]["hole_ratio"]["mean"]],
                    [centre * metric.scale],
                    "s",
                    color=color,
                    markerfacecolor="none",
                    markersize=9,
                    label=f"{m} (centre block)" if not xs else None,
                )
                drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("hole ratio (%)  [□ = centre block]")
        ax.set_ylabel(
            metric.header
            + (
                f"  → {metric.target:g}"
                if metric.target is not None
                else "  ↑"
                if metric.higher_is_better
                else "  ↓"
            )
        )
        ax.set_title(f"{metric.header} by hole ratio")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{metric.key}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


@dataclass
class GridCase:
    """One case shown in the grid: which, its PSNR against its bin's mean, and the images."""

    label: str  # "worst" or "best"
    method: str
    image: str
    bin: str
    psnr: float
    bin_mean: float
    masked: np.ndarray  # the input, hole painted white
    output: np.ndarray
    truth: np.ndarray


def plot_grid(cases: list[GridCase], path: Path) -> None:
    """Rows of (input with the hole in white | output | truth): worst cases, then best."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(cases), 3, figsize=(6, 2.15 * len(cases) + 0.4), dpi=100, squeeze=False)
    for r, case in enumerate(cases):
        titles = [
            f"input, {case.bin}" + (" block" if case.bin == CENTRE else " hole"),
            f"output: {case.psnr:.2f} dB (bin mean {case.bin_mean:.2f})",
            f"truth: {case.image}",
        ]
        for c, img in enumerate([case.masked, case.output, case.truth]):
            ax = axes[r][c]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(titles[c], fontsize=7)
        axes[r][0].set_ylabel(case.label, fontsize=9)
    method = cases[0].method if cases else ""
    fig.suptitle(f"{method}\nworst and best cases by PSNR relative to their bin's mean", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------------ results


def _json_safe(value: Any) -> Any:
    """Non-finite floats become None (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def shown_metrics(results: dict) -> list[Metric]:
    agg = results["aggregate"]
    present = {k for b in agg.values() for entry in b.values() for k in entry}
    return [m for m in METRICS if m.key in present]


def write_report(results: dict, out_dir: Path, grid: list[GridCase] | None = None) -> list[Path]:
    """results.json, report.md, one plot per metric and the best/worst grid."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    path = out_dir / "results.json"
    path.write_text(json.dumps(_json_safe(results), indent=1, allow_nan=False) + "\n")
    written.append(path)
    settings, agg = results["settings"], results["aggregate"]
    bins, names = settings["bins"], list(settings["methods"])
    shown = shown_metrics(results)
    figures: list[Path] = []
    plot_problem = None
    try:
        plots_dir = out_dir / "plots"
        plots_dir.mkdir(exist_ok=True)
        figures = plot_metrics(agg, bins, names, shown, plots_dir)
        if grid:
            grid_path = out_dir / f"cases_{grid[0].method}.png"
            plot_grid(grid, grid_path)
            figures.append(grid_path)
    except ImportError:
        plot_problem = "matplotlib is not installed (pip install 'lafin[eval]')"
        log.warning("no plots: %s", plot_problem)
    written += figures

    lines = [f"# lafin evaluate: {settings['images_evaluated']} images", ""]
    lines += ["## Settings", ""]
    lines.append(
        f"- images: `{settings['images']}`"
        + (f" (names from `{settings['names']}`)" if settings["names"] else "")
        + f", {settings['images_evaluated']} evaluated"
        + (f" (a seeded sample of {settings['limit']})" if settings["limit"] else "")
        + f", resized to {settings['size']}x{settings['size']}"
    )
    lines.append(
        f"- masks: {settings['masks']['description']}; bins: {', '.join(bins)}; seed {settings['seed']}"
    )
    for name, info in settings["methods"].items():
        detail = ", ".join(f"{k}: {v}" for k, v in info.items() if k != "kind" and v)
        lines.append(f"- method `{name}` ({info['kind']}): {detail}")
    truth = settings["landmark_truth"]
    if "nme" not in results["unavailable"]:
        lines.append(
            "- landmark ground truth: "
            + ", ".join(
                f"{n} from {'the --landmarks files' if k == 'file' else 'dlib annotation of the truth'}"
                for k, n in truth.items()
            )
        )
    if settings["face_box"]:
        lines.append("- dlib face box: " + ", ".join(f"{n} {k}" for k, n in settings["face_box"].items()))
    if settings["fid"]:
        lines.append(f"- FID: {settings['fid']['label']}, sha256 {settings['fid']['sha256'][:16]}...")
    if settings["lpips"]:
        lines.append(
            f"- LPIPS: {settings['lpips']['backbone']} backbone from "
            + ", ".join(f"`{p}`" for p in settings["lpips"]["weights"])
        )
    versions = results["versions"]
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += ["", "## Metrics", ""]
    for metric in shown:
        lines.append(f"- {metric.header}: {_definition(metric.key)} ({metric.better()})")
    if results["unavailable"]:
        lines += ["", "Unavailable:"]
        for key, why in results["unavailable"].items():
            label = METRIC_BY_KEY[key].header if key in METRIC_BY_KEY else key
            lines.append(f"- {label.split(' (')[0]}: unavailable ({why})")
    for note in results["notes"]:
        lines += ["", f"Note: {note}"]
    lines += [
        "",
        "## Results by hole ratio",
        "",
        "Means over the images of each bin (the detail ratio: the median); best value of "
        "each column in bold.",
    ]
    for b, table in tables(agg, bins, names, shown).items():
        ratio = np.mean([agg[b][m]["hole_ratio"].get("mean", 0.0) for m in names])
        title = "centre block" if b == CENTRE else f"{b} hole"
        lines += [
            "",
            f"### {title} (mean hole {100 * ratio:.1f}%, {agg[b][names[0]]['cases']} images)",
            "",
            table,
        ]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in figures]
    elif plot_problem:
        lines += ["", f"Plots: unavailable ({plot_problem})"]
    if results["skipped"]:
        lines += ["", "## Skipped images", ""]
        lines += [f"- {s['image']}: {s['reason']}" for s in results["skipped"]]
    lines += [
        "",
        f"Time: {results['run']['seconds']:.1f} s; per output (ms): "
        + ", ".join(f"{m} {v}" for m, v in results["run"]["ms_per_output"].items()),
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    written.append(path)
    return written


_DEFINITIONS = {
    "psnr": "10 log10(255^2 / MSE) over all RGB values of the whole composited image",
    "ssim": "Wang et al. 2004 (Gaussian window sigma 1.5, K1 0.01, K2 0.03, data range 255, "
    "population covariances), per RGB channel, averaged",
    "l1_hole": "mean absolute error over the hole's pixels, as a percentage of 255",
    "lpips": "Zhang et al. 2018: unit-normalised backbone features, squared differences "
    "weighted by the learned linear layers, spatial mean, summed over 5 layers",
    "fid": "Frechet distance between Inception pool3 features of the bin's outputs and of the "
    "ground-truth images",
    "nme": "the method's predicted landmarks (from the masked input) vs the ground truth: mean "
    "point distance / distance of the truth's outer eye corners (points 37 and 46)",
    "nme_failure": "share of faces with NME above 8%",
    "landmark_consistency": "NME between dlib's 68 points on the output and on the truth (same "
    "face box): how much the face's structure moved",
    "identity": "Euclidean distance of dlib face descriptors (ResNet v1) of output and truth, "
    "both aligned by the truth's landmarks",
    "identity_lost": "share of outputs whose descriptor distance exceeds 0.6 (dlib's threshold)",
    "kid": "Bińkowski et al. 2018: unbiased MMD² of Inception pool3 features of the bin's "
    "outputs and of the ground truth, kernel (x·y/2048 + 1)³, mean ± std over random "
    "subsets (x1000)",
    "detail_ratio": "variance of the Laplacian of grey (0.299R+0.587G+0.114B) inside the hole "
    "eroded by 3 px, output / truth; median over the images (1 = as detailed as "
    "the truth, below 1 = smoother)",
    "mid_detail_ratio": "the detail ratio with both greys blurred by a Gaussian of sigma 1 px "
    "first (a Laplacian of Gaussian): a pattern of period 2 px, such as a generator's "
    "checkerboard, does not count as detail",
    "lm_fidelity": "the output generated from the true landmarks (the judge predictor's points "
    "on the unmasked truth): NME of the judge's points on the output against "
    "them (do the generated features sit where they were asked to?)",
}


def _definition(key: str) -> str:
    if key in _DEFINITIONS:
        return _DEFINITIONS[key]
    name = next(n for n in EXPRESSION_NAMES if fidelity_key(n) == key)
    return (
        f"as LM fidelity, but the true landmarks edited by '{name}' "
        "(lafin.landmarks.edit_expression) are given to the generator and are the reference, "
        "with the hole joined by a box over the edited points (an edit can only show in the "
        "hole; a method without landmarks shows what ignoring the edit scores)"
    )


def print_tables(results: dict) -> None:
    settings, agg = results["settings"], results["aggregate"]
    names = list(settings["methods"])
    shown = shown_metrics(results)
    for b, table in tables(agg, settings["bins"], names, shown).items():
        title = "centre block" if b == CENTRE else f"hole {b}"
        print(f"\n{title} ({agg[b][names[0]]['cases']} images)")
        print(table.replace("**", ""))
    for key, why in results["unavailable"].items():
        label = METRIC_BY_KEY[key].header.split(" (")[0] if key in METRIC_BY_KEY else key
        print(f"{label}: unavailable ({why})")
