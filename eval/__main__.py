"""``python -m eval``: evaluate passages and answers on a gold set, in process or over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from eval.gold import GOLD_PATH, GoldFormatError, load_gold
from eval.report import (
    ANSWER_COLUMNS,
    ANSWER_HEADERS,
    RANKING_COLUMNS,
    Runs,
    rows,
    summarise,
    write,
)
from eval.runner import run
from eval.targets import http_target, in_process_target
from index.retriever import MODES, Mode
from index.settings import Settings

app = typer.Typer(add_completion=False)
console = Console(width=160)


@app.command()
def main(
    gold: Annotated[
        Path, typer.Option(help="Gold questions, one JSON object a line (see eval/gold.py)")
    ] = GOLD_PATH,
    split: Annotated[str, typer.Option(help="dev (tuning), test (held out) or all")] = "all",
    modes: Annotated[
        str, typer.Option(help="Comma-separated: hybrid,dense,lexical")
    ] = "hybrid,dense,lexical",
    url: Annotated[str | None, typer.Option(help="Evaluate a running service over HTTP")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default var/reports)")] = None,
) -> None:
    """Print the passage and answer tables; write eval.md, eval.json, eval.png and
    no_answer.png."""
    settings = Settings()
    try:
        items = load_gold(gold)
    except GoldFormatError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=2) from error
    splits = sorted({i.split for i in items}) if split == "all" else [split]
    chosen: list[Mode] = [m for m in MODES if m in modes.split(",")]
    target = http_target(url) if url else in_process_target(settings)
    runs: Runs = {
        name: {
            mode: run([i for i in items if i.split == name], target, mode=mode, show_progress=True)
            for mode in chosen
        }
        for name in splits
    }
    summary = summarise(runs)
    title = f"{gold.name}: {len(items)} questions via {target.name}"
    keys = ["split", "mode", "lang"]
    _print(f"passages ({title})", [*keys, *RANKING_COLUMNS], rows(summary, RANKING_COLUMNS))
    _print(f"answers ({title})", [*keys, *ANSWER_HEADERS], rows(summary, ANSWER_COLUMNS))
    meta = {"gold": str(gold), "questions": len(items), "target": target.name}
    for path in write(summary, runs, meta, out or settings.data_dir / "reports"):
        console.print(f"wrote {path}")


def _print(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    app()
