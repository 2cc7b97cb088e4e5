"""Evaluation report: a table for the terminal, Markdown + JSON files, and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.runner import K_VALUES, Outcome, breakdown, failures, no_answer_metrics, ranking_metrics

COLUMNS = ("n", "recall@1", "recall@3", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def summarise(runs: dict[str, list[Outcome]]) -> dict[str, Any]:
    """Metrics per mode: overall, per language, per question type, no-answer quality."""
    return {
        mode: {
            "overall": ranking_metrics(outcomes),
            "by_language": breakdown(outcomes, lambda item: item.lang),
            "by_type": breakdown(outcomes, lambda item: item.type),
            "no_answer": {
                lang: no_answer_metrics([o for o in outcomes if o.item.lang == lang])
                for lang in ("zh", "en")
            },
        }
        for mode, outcomes in runs.items()
    }


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Mode x language rows for printing."""
    rows = []
    for mode, parts in summary.items():
        for lang, metrics in parts["by_language"].items():
            values = [
                f"{metrics.get(c, 0):.3f}" if c != "n" else str(int(metrics["n"])) for c in COLUMNS
            ]
            na = parts["no_answer"][lang]
            rows.append(
                [
                    mode,
                    lang,
                    *values,
                    f"{na['no_answer_precision']:.2f}/{na['no_answer_recall']:.2f}",
                ]
            )
    return rows


def markdown(summary: dict[str, Any], runs: dict[str, list[Outcome]], meta: dict[str, Any]) -> str:
    header = ["mode", "lang", *COLUMNS, "no-answer P/R"]
    lines = [
        "# policy-qa retrieval evaluation",
        "",
        ", ".join(f"{k}: {v}" for k, v in meta.items()),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary)]
    first_mode = next(iter(runs))
    lines += [
        "",
        f"## By question type ({first_mode})",
        "",
        "| type | n | recall@5 | mrr@10 |",
        "|---|---|---|---|",
    ]
    for kind, metrics in summary[first_mode]["by_type"].items():
        if metrics.get("n"):
            recall, mrr = metrics["recall@5"], metrics["mrr@10"]
            lines.append(f"| {kind} | {int(metrics['n'])} | {recall:.3f} | {mrr:.3f} |")
    lines += ["", f"## Failures ({first_mode}: no evidence passage in the top 5)", ""]
    for outcome in failures(runs[first_mode]):
        lines.append(
            f"- **{outcome.item.id}** {outcome.item.question}  \n"
            f"  expected `{', '.join(sorted(outcome.relevant)) or '-'}` "
            f"(evidence: {outcome.item.evidence[0] if outcome.item.evidence else '-'}); "
            f"got `{', '.join(outcome.response.chunk_ids[:5])}`"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    """Recall@k curves per mode and language, and recall@5 per question type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    cjk = [f.name for f in font_manager.fontManager.ttflist if "CJK" in f.name]
    plt.rcParams["font.family"] = [*cjk[:1], "DejaVu Sans"]
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    styles = {"zh": ("-", "o"), "en": ("--", "s")}
    colours = dict(zip(summary, ("#1f5fa8", "#e07b00", "#2e8b57"), strict=False))
    for mode, parts in summary.items():
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
        title="Recall@k by retrieval mode and question language",
        xlabel="k (passages returned)",
        ylabel="Recall@k (share of questions with evidence in top k)",
        ylim=(0, 1.02),
        xticks=K_VALUES,
    )
    curves.grid(alpha=0.3)
    curves.legend(loc="lower right", fontsize=8)
    first = next(iter(summary))
    kinds = [k for k, m in summary[first]["by_type"].items() if m.get("n")]
    width = 0.8 / max(1, len(summary))
    for offset, (mode, parts) in enumerate(summary.items()):
        values = [parts["by_type"][k].get("recall@5", 0) for k in kinds]
        positions = [i + offset * width for i in range(len(kinds))]
        bars.bar(positions, values, width=width, label=mode, color=colours.get(mode))
    bars.set_xticks(
        [i + width * (len(summary) - 1) / 2 for i in range(len(kinds))], kinds, rotation=30
    )
    bars.set(title="Recall@5 by question type", ylabel="Recall@5", ylim=(0, 1.05))
    bars.grid(axis="y", alpha=0.3)
    bars.legend(fontsize=8)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(
    summary: dict[str, Any], runs: dict[str, list[Outcome]], meta: dict[str, Any], folder: Path
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    md, js, png = folder / "eval.md", folder / "eval.json", folder / "eval.png"
    md.write_text(markdown(summary, runs, meta), encoding="utf-8")
    failures_by_mode = {
        mode: [
            {
                "id": o.item.id,
                "question": o.item.question,
                "expected": sorted(o.relevant),
                "evidence": list(o.item.evidence),
                "got": list(o.response.chunk_ids[:5]),
            }
            for o in failures(outcomes)
        ]
        for mode, outcomes in runs.items()
    }
    js.write_text(
        json.dumps(
            {"meta": meta, "summary": summary, "failures": failures_by_mode},
            ensure_ascii=False,
            indent=2,
        ),
        encoding="utf-8",
    )
    plot(summary, png)
    return [md, js, png]
