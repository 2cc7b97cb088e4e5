"""``python -m eval.calibrate`` (``make calibrate``): refit the relevance calibration on the
dev split, and report the calibration in the code on both splits, with its curve.

Every gold question is searched (top 10) and answered in process; each returned passage
is labelled relevant when it holds the question's evidence (``relevant_chunk_ids``), so
every passage of an unanswerable question is irrelevant. A logistic regression over
``index.relevance.FEATURES`` is fitted on dev by Newton's method, on standardised
features with a small L2 penalty, the two classes weighted to the same total. The fitted
constants are printed for ``index/relevance.py``; nothing is saved but the report:
``var/reports/calibration.md``, ``calibration.json`` and ``calibration.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from eval.gold import GoldItem, load_gold, relevant_chunk_ids
from eval.report import finish_plot
from eval.targets import documents_and_passages
from index import relevance
from index.answer import Answerer
from index.pipeline import ensure_snapshot, load_components, make_answerer, make_retriever
from index.retriever import Retriever
from index.settings import Settings

DEPTH = 10
"""Passages per question the fit sees (``/retrieval`` returns up to 20, mostly 5)."""
KEPT_DEPTH = 5
"""The acceptance counts gold-evidence passages in the top 5."""
L2 = 1.0
THRESHOLDS = [round(t * 0.01, 2) for t in range(101)]

app = typer.Typer(add_completion=False)


@dataclass(frozen=True, slots=True)
class Scored:
    """One returned passage: its question, rank, features and whether it holds evidence."""

    item: GoldItem
    rank: int
    features: dict[str, float]
    relevant: bool
    capped: bool
    """The answer stage judged the question not stated (its passages stay below 0.5)."""


def collect(items: list[GoldItem], retriever: Retriever, answerer: Answerer) -> list[Scored]:
    """Search and answer each question; label each returned passage."""
    documents, chunks = documents_and_passages(retriever.snapshot)
    scored = []
    for item in items:
        result = retriever.search(item.question, top_k=DEPTH)
        answer = answerer.answer(result)
        relevant = relevant_chunk_ids(item, documents, chunks)
        rows = relevance.passage_features(result, answer)
        scored += [
            Scored(item, rank, row, hit.chunk_id in relevant, not answer.stated)
            for rank, (hit, row) in enumerate(zip(result.hits, rows, strict=True), start=1)
        ]
    return scored


def fit_logistic(
    x: np.ndarray, y: np.ndarray, *, l2: float = L2, iterations: int = 100
) -> tuple[float, np.ndarray]:
    """Weighted, L2-penalised logistic regression by Newton's method.

    Features are standardised for the fit (so one penalty suits them all), the intercept
    is not penalised, and each class weighs half of the total. Returns the intercept and
    weights on the raw features.
    """
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    positives = max(1.0, float(y.sum()))
    negatives = max(1.0, float(len(y) - y.sum()))
    weight = np.where(y == 1, len(y) / (2 * positives), len(y) / (2 * negatives))
    penalty = np.diag([0.0, *[l2] * x.shape[1]])
    beta = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-z @ beta))
        gradient = z.T @ (weight * (p - y)) + penalty @ beta
        hessian = (z * (weight * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    weights = beta[1:] / scale
    return float(beta[0] - (weights * mean).sum()), weights


def scores(scored: list[Scored]) -> np.ndarray:
    """Calibrated relevance of each passage, as the service scores it (the code's constants)."""
    return np.array([relevance.score(s.features, stated=not s.capped) for s in scored])


def at_threshold(scored: list[Scored], p: np.ndarray, threshold: float) -> dict[str, float]:
    """What a threshold keeps: gold-evidence passages in the top 5, irrelevant ones, and
    the unanswerable questions whose every passage it drops."""
    top = [(s, q) for s, q in zip(scored, p, strict=True) if s.rank <= KEPT_DEPTH]
    evidence = [q >= threshold for s, q in top if s.relevant]
    irrelevant = [q >= threshold for s, q in top if not s.relevant]
    unanswerable: dict[str, bool] = {}
    for s, q in zip(scored, p, strict=True):
        if not s.item.answerable:
            unanswerable[s.item.id] = unanswerable.get(s.item.id, True) and q < threshold
    return {
        "threshold": threshold,
        "evidence_kept": float(np.mean(evidence)) if evidence else 0.0,
        "irrelevant_kept": float(np.mean(irrelevant)) if irrelevant else 0.0,
        "unanswerable_all_dropped": float(np.mean(list(unanswerable.values())))
        if unanswerable
        else 0.0,
        "evidence_passages": len(evidence),
        "unanswerable_questions": len(unanswerable),
    }


def constants_block(intercept: float, weights: dict[str, float]) -> str:
    lines = [f"INTERCEPT = {intercept:.4f}", "WEIGHTS: dict[str, float] = {"]
    lines += [f'    "{name}": {weights[name]:.4f},' for name in relevance.FEATURES]
    return "\n".join([*lines, "}"])


def report(curves: dict[str, list[dict[str, float]]], meta: dict[str, Any], folder: Path) -> Path:
    """calibration.md / .json / .png: the curve on each split, the operating point marked."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calibration.json").write_text(
        json.dumps({"meta": meta, "curves": curves}, indent=2) + "\n", encoding="utf-8"
    )
    at = {
        split: next(r for r in rows if r["threshold"] == relevance.THRESHOLD)
        for split, rows in curves.items()
    }
    lines = [
        "# Relevance calibration (`/retrieval` score)",
        "",
        ", ".join(f"{k}: {v}" for k, v in meta.items()),
        "",
        f"At the documented threshold {relevance.THRESHOLD}:",
        "",
        "| split | gold-evidence passages in the top 5 kept | unanswerable questions with "
        "every passage dropped | irrelevant top-5 passages kept |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {split} | {r['evidence_kept']:.3f} (of {r['evidence_passages']}) | "
        f"{r['unanswerable_all_dropped']:.3f} (of {r['unanswerable_questions']}) | "
        f"{r['irrelevant_kept']:.3f} |"
        for split, r in at.items()
    ]
    lines += [
        "",
        "The curve, every 0.1 (kept evidence / unanswerable all dropped / irrelevant kept):",
        "",
        "| threshold | " + " | ".join(curves) + " |",
        "|---|" + "---|" * len(curves),
    ]
    for t in THRESHOLDS[::10]:
        cells = [next(r for r in rows if r["threshold"] == t) for rows in curves.values()]
        lines.append(
            f"| {t:.1f} | "
            + " | ".join(
                f"{r['evidence_kept']:.3f} / {r['unanswerable_all_dropped']:.3f} / "
                f"{r['irrelevant_kept']:.3f}"
                for r in cells
            )
            + " |"
        )
    lines += ["", "![the curve](calibration.png)", ""]
    (folder / "calibration.md").write_text("\n".join(lines), encoding="utf-8")
    return plot(curves, folder / "calibration.png")


def plot(curves: dict[str, list[dict[str, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    colours = {"dev": "#e07b00", "test": "#1f5fa8"}
    series = (
        ("evidence_kept", "-", "gold-evidence passages (top 5) kept"),
        ("unanswerable_all_dropped", "--", "unanswerable questions: every passage dropped"),
        ("irrelevant_kept", ":", "irrelevant passages (top 5) kept"),
    )
    for split, rows in curves.items():
        for key, style, label in series:
            axes.plot(
                [r["threshold"] for r in rows],
                [r[key] for r in rows],
                linestyle=style,
                color=colours.get(split),
                label=f"{split}: {label}",
            )
    axes.axvline(relevance.THRESHOLD, color="grey", linewidth=1)
    axes.axhline(0.9, color="#2e8b57", linewidth=0.8, linestyle="-.")
    axes.axhline(0.5, color="#2e8b57", linewidth=0.8, linestyle="-.")
    return finish_plot(
        figure,
        axes,
        path,
        title="/retrieval score threshold: what it keeps and drops\n"
        "(vertical line: the documented threshold; dash-dot: the 0.9 and 0.5 floors)",
        xlabel="score_threshold",
        ylabel="share",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )


@app.command()
def main(
    out: Annotated[Path | None, typer.Option(help="Report folder (default var/reports)")] = None,
) -> None:
    """Refit on dev; report the constants in the code on dev and test."""
    settings = Settings()
    parts = load_components(settings)
    snapshot, _ = ensure_snapshot(parts, show_progress=True)
    retriever, answerer = make_retriever(parts, snapshot), make_answerer(parts)
    gold = load_gold()
    scored = collect(gold, retriever, answerer)
    by_split = {split: [s for s in scored if s.item.split == split] for split in ("dev", "test")}

    dev = by_split["dev"]
    x = np.array([[s.features[n] for n in relevance.FEATURES] for s in dev])
    y = np.array([float(s.relevant) for s in dev])
    intercept, fitted = fit_logistic(x, y)
    refit = dict(zip(relevance.FEATURES, fitted.tolist(), strict=True))
    typer.echo("Refitted on dev (paste into index/relevance.py to use them):\n")
    typer.echo(constants_block(intercept, refit) + "\n")

    curves = {}
    for split, passages in by_split.items():
        p = scores(passages)
        curves[split] = [at_threshold(passages, p, t) for t in THRESHOLDS]
    for split, rows in curves.items():
        r = next(r for r in rows if r["threshold"] == relevance.THRESHOLD)
        typer.echo(
            f"{split}: at {relevance.THRESHOLD} (constants in the code) "
            f"{r['evidence_kept']:.3f} of {r['evidence_passages']} gold-evidence passages in "
            f"the top 5 kept; {r['unanswerable_all_dropped']:.3f} of "
            f"{r['unanswerable_questions']} unanswerable questions with every passage "
            f"dropped; {r['irrelevant_kept']:.3f} of irrelevant top-5 passages kept"
        )
    meta = {"questions": len(gold), "depth": DEPTH, "model": parts.embedder.model_id}
    path = report(curves, meta, out or settings.data_dir / "reports")
    typer.echo(f"wrote {path.parent / 'calibration.md'}, calibration.json, {path.name}")


if __name__ == "__main__":
    app()
