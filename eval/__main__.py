"""``python -m eval``: evaluate retrieval on the gold set, in process or over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from eval.gold import load_gold
from eval.report import COLUMNS, summarise, table_rows, write
from eval.runner import Outcome, run
from eval.targets import http_target, in_process_target
from index.retriever import MODES, Mode
from index.settings import Settings

app = typer.Typer(add_completion=False)
console = Console(width=150)


@app.command()
def main(
    split: Annotated[str, typer.Option(help="dev (tuning), test (held out) or all")] = "test",
    modes: Annotated[
        str, typer.Option(help="Comma-separated: hybrid,dense,lexical")
    ] = "hybrid,dense,lexical",
    url: Annotated[str | None, typer.Option(help="Evaluate a running service over HTTP")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default var/reports)")] = None,
) -> None:
    """Print the metrics table and write eval.md, eval.json and eval.png."""
    settings = Settings()
    items = load_gold(split=None if split == "all" else split)  # type: ignore[arg-type]
    chosen: list[Mode] = [m for m in MODES if m in modes.split(",")]
    target = http_target(url) if url else in_process_target(settings)
    runs: dict[str, list[Outcome]] = {
        mode: run(items, target.ask, target.relevant, mode=mode, show_progress=True)
        for mode in chosen
    }
    summary = summarise(runs)
    table = Table(
        title=f"retrieval on the {split} split ({len(items)} questions) via {target.name}"
    )
    for column in ("mode", "lang", *COLUMNS, "no-answer P/R"):
        table.add_column(column)
    for row in table_rows(summary):
        table.add_row(*row)
    console.print(table)
    meta = {"split": split, "questions": len(items), "target": target.name}
    for path in write(summary, runs, meta, out or settings.data_dir / "reports"):
        console.print(f"wrote {path}")


if __name__ == "__main__":
    app()
