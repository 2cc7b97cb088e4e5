"""Evaluation report: tables for the terminal, Markdown + JSON files, and two plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from eval.runner import (
    K_VALUES,
    Outcome,
    answer_failures,
    answer_metrics,
    breakdown,
    failures,
    no_answer_curve,
    ranking_metrics,
)

RANKING_COLUMNS = ("n", "recall@1", "recall@3", "recall@5", "recall@10", "mrr@10", "ndcg@10")
ANSWER_COLUMNS = (
    "answerable",
    "answer_holds_evidence",
    "answer_chars_median",
    "unanswerable",
    "no_answer_precision",
    "no_answer_recall",
    "no_answer_f1",
    "wrongly_flagged",
)
ANSWER_HEADERS = (
    "answerable",
    "answer holds evidence",
    "answer chars (median)",
    "unanswerable",
    "no-answer P",
    "no-answer R",
    "no-answer F1",
    "answerable wrongly flagged",
)
LANGUAGES = ("zh", "en")
Runs = dict[str, dict[str, list[Outcome]]]
"""Outcomes by split, then by retrieval mode."""


def summarise(runs: Runs) -> dict[str, Any]:
    """Metrics per split and mode: overall, per language, per question type, and the
    no-answer precision-recall curve per language."""
    return {
        split: {
            mode: {
                "overall": {**ranking_metrics(outcomes), **answer_metrics(outcomes)},
                "by_language": breakdown(outcomes, lambda item: item.lang),
                "by_type": breakdown(outcomes, lambda item: item.type),
                "no_answer_curve": {
                    lang: no_answer_curve([o for o in outcomes if o.item.lang == lang])
                    for lang in LANGUAGES
                },
            }
            for mode, outcomes in modes.items()
        }
        for split, modes in runs.items()
    }


def rows(summary: dict[str, Any], columns: tuple[str, ...]) -> list[list[str]]:
    """Split x mode x language rows of the given metrics."""
    return [
        [split, mode, lang, *(_cell(metrics, c) for c in columns)]
        for split, modes in summary.items()
        for mode, parts in modes.items()
        for lang, metrics in parts["by_language"].items()
    ]


def _cell(metrics: dict[str, float], column: str) -> str:
    value = metrics.get(column, 0)
    whole = column in ("n", "answerable", "unanswerable", "answer_chars_median")
    return str(int(value)) if whole else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(summary: dict[str, Any], runs: Runs, meta: dict[str, Any]) -> str:
    lines = [
        "# policy-qa evaluation",
        "",
        ", ".join(f"{k}: {v}" for k, v in meta.items()),
        "",
        "## Passages",
        "",
        *_table(["split", "mode", "lang", *RANKING_COLUMNS], rows(summary, RANKING_COLUMNS)),
        "",
        "## The answer line",
        "",
        "An answer holds the evidence when it quotes at least half of one gold evidence span",
        "(non-whitespace characters). No-answer precision and recall are those of flagging",
        "unanswerable questions; wrongly flagged is the share of answerable ones flagged.",
        "",
        *_table(["split", "mode", "lang", *ANSWER_HEADERS], rows(summary, ANSWER_COLUMNS)),
        "",
        "![precision-recall of the no-answer decision](no_answer.png)",
    ]
    for split, modes in summary.items():
        mode = next(iter(modes))
        lines += [
            "",
            f"## By question type ({split}, {mode})",
            "",
            "| type | n | recall@1 | recall@5 | mrr@10 | answer holds evidence | no-answer R |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, m in modes[mode]["by_type"].items():
            lines.append(
                f"| {kind} | {int(m['answerable'] + m['unanswerable'])} | "
                f"{m.get('recall@1', 0):.3f} | {m.get('recall@5', 0):.3f} | "
                f"{m.get('mrr@10', 0):.3f} | {m['answer_holds_evidence']:.3f} | "
                f"{m['no_answer_recall']:.3f} |"
            )
    for split, modes in runs.items():
        mode, outcomes = next(iter(modes.items()))
        lines += ["", f"## Passage failures ({split}, {mode}: no evidence in the top 5)", ""]
        lines += [
            f"- **{o.item.id}** {o.item.question}  \n"
            f"  expected `{', '.join(sorted(o.relevant)) or '-'}`; "
            f"got `{', '.join(o.response.chunk_ids[:5])}`"
            for o in failures(outcomes)
        ]
        lines += ["", f"## Answer failures ({split}, {mode})", ""]
        lines += [_answer_failure(o) for o in answer_failures(outcomes)]
    return "\n".join(lines) + "\n"


def _answer_failure(outcome: Outcome) -> str:
    item, response = outcome.item, outcome.response
    got = "not stated" if response.no_answer else response.answer_text
    expected = item.evidence[0] if item.evidence else "not stated"
    return f"- **{item.id}** {item.question}  \n  expected: {expected}  \n  got: {got}"


def plot(summary: dict[str, Any], folder: Path) -> list[Path]:
    """eval.png: Recall@k curves and recall@5 per question type (the last split);
    no_answer.png: the no-answer decision's precision-recall curve per split and language,
    with the service's operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    cjk = [f.name for f in font_manager.fontManager.ttflist if "CJK" in f.name]
    plt.rcParams["font.family"] = [*cjk[:1], "DejaVu Sans"]
    split = list(summary)[-1]
    modes = summary[split]
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    styles = {"zh": ("-", "o"), "en": ("--", "s")}
    colours = dict(zip(modes, ("#1f5fa8", "#e07b00", "#2e8b57"), strict=False))
    for mode, parts in modes.items():
        for lang, metrics in parts["by_language"].items():
            line, marker = styles.get(lang, (":", "^"))
            curves.plot(
                K_VALUES,
                [metrics[f"recall@{k}"] for k in K_VALUES],
                linestyle=line,
                marker=marker,
                color=colours.get(mode),
                label=f"{mode} · {'中文 Chinese' if lang == 'zh' else 'English'}",
            )
    curves.set(
        title=f"Recall@k by retrieval mode and question language ({split})",
        xlabel="k (passages returned)",
        ylabel="Recall@k (share of questions with evidence in top k)",
        ylim=(0, 1.02),
        xticks=K_VALUES,
    )
    curves.grid(alpha=0.3)
    curves.legend(loc="lower right", fontsize=8)
    first = next(iter(modes))
    kinds = [k for k, m in modes[first]["by_type"].items() if m.get("n")]
    width = 0.8 / max(1, len(modes))
    for offset, (mode, parts) in enumerate(modes.items()):
        values = [parts["by_type"][k].get("recall@5", 0) for k in kinds]
        positions = [i + offset * width for i in range(len(kinds))]
        bars.bar(positions, values, width=width, label=mode, color=colours.get(mode))
    bars.set_xticks(
        [i + width * (len(modes) - 1) / 2 for i in range(len(kinds))], kinds, rotation=30
    )
    bars.set(title=f"Recall@5 by question type ({split})", ylabel="Recall@5", ylim=(0, 1.05))
    bars.grid(axis="y", alpha=0.3)
    bars.legend(fontsize=8)
    recall_path = folder / "eval.png"
    figure.savefig(recall_path, dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 5.5), constrained_layout=True)
    for split_name, split_modes in summary.items():
        mode = next(iter(split_modes))
        for lang in LANGUAGES:
            curve = split_modes[mode]["no_answer_curve"][lang]
            line, marker = styles[lang]
            colour = "#1f5fa8" if split_name == "test" else "#e07b00"
            label = f"{split_name} · {'中文 Chinese' if lang == 'zh' else 'English'}"
            axes.plot(
                [r for _, _, r in curve],
                [p for _, p, _ in curve],
                linestyle=line,
                color=colour,
                label=label,
            )
            chosen = split_modes[mode]["by_language"][lang]
            axes.plot(
                chosen["no_answer_recall"],
                chosen["no_answer_precision"],
                marker=marker,
                markersize=9,
                color=colour,
                markeredgecolor="black",
            )
    curve_path = finish_plot(
        figure,
        axes,
        folder / "no_answer.png",
        title="“Not stated” decision: precision vs recall as the support threshold moves\n"
        "(markers: the service's operating point, chosen on dev)",
        xlabel="recall (share of unanswerable questions flagged)",
        ylabel="precision (share of flagged questions truly unanswerable)",
        xlim=(0, 1.02),
        ylim=(0, 1.05),
    )
    return [recall_path, curve_path]


def finish_plot(figure: Any, axes: Any, path: Path, **labels: Any) -> Path:
    """Label the axes (``labels``: title, xlabel, ylabel, limits), add a grid and a legend,
    and save the figure as a PNG."""
    import matplotlib.pyplot as plt

    axes.set(**labels)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write(summary: dict[str, Any], runs: Runs, meta: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "eval.md", folder / "eval.json"
    md.write_text(markdown(summary, runs, meta), encoding="utf-8")
    details = {
        split: {
            mode: [
                {
                    "id": o.item.id,
                    "question": o.item.question,
                    "answerable": o.item.answerable,
                    "relevant": sorted(o.relevant),
                    "got": list(o.response.chunk_ids[:5]),
                    "answer": None if o.response.no_answer else o.response.answer_text,
                    "holds_evidence": o.holds_evidence,
                    "support": o.response.support if math.isfinite(o.response.support) else None,
                }
                for o in outcomes
            ]
            for mode, outcomes in modes.items()
        }
        for split, modes in runs.items()
    }
    js.write_text(
        json.dumps(
            {"meta": meta, "summary": summary, "questions": details}, ensure_ascii=False, indent=2
        ),
        encoding="utf-8",
    )
    return [md, js, *plot(summary, folder)]
