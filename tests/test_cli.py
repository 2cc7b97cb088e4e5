"""The maintainer CLI end to end: build, stats, ask, add, remove, and clean errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from index.cli import app
from index.settings import Settings
from index.snapshot import Snapshot


@pytest.fixture
def cli_env(
    settings: Settings, snapshot: Snapshot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point the CLI at a private copy of the session's corpus and built index."""
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(settings.corpus_dir, corpus)
    shutil.copytree(settings.index_root, tmp_path / "data" / "index")
    monkeypatch.setenv("POLICY_QA_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("POLICY_QA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("POLICY_QA_MODELS_DIR", str(settings.default_model_dir.parent))
    return corpus


def test_build_stats_ask(cli_env: Path) -> None:
    runner = CliRunner()
    built = runner.invoke(app, ["build"])
    assert built.exit_code == 0, built.output
    assert "up to date" in built.output
    stats = runner.invoke(app, ["stats"])
    assert stats.exit_code == 0 and "most-plan-2023-41" in stats.output
    answer = runner.invoke(app, ["ask", "How many unicorn companies does Beijing have?"])
    assert answer.exit_code == 0 and "115家" in answer.output and "chars" in answer.output


def test_add_then_remove_one_document(cli_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    source = tmp_path / "notice.md"
    source.write_text(
        "# 通知\n一、总则\n设立海淀区量子信息专项资金，每年安排三亿元。", encoding="utf-8"
    )
    args = [
        "add",
        str(source),
        "--id",
        "haidian-quantum",
        "--title-zh",
        "海淀量子通知",
        "--title-en",
        "Haidian quantum notice",
    ]
    added = runner.invoke(app, args)
    assert added.exit_code == 0, added.output
    assert (cli_env / "documents" / "haidian-quantum.md").exists()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists" in again.output
    answer = runner.invoke(app, ["ask", "海淀区量子信息专项资金每年多少？", "--top-k", "1"])
    assert "haidian-quantum" in answer.output
    stats = runner.invoke(app, ["stats"]).output
    assert "haidian-quantum" in stats and "main segment was built: 2 passages" in stats
    removed = runner.invoke(app, ["remove", "haidian-quantum"])
    assert removed.exit_code == 0, removed.output
    assert "haidian-quantum" not in runner.invoke(app, ["stats"]).output


def test_errors_are_messages_not_tracebacks(cli_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["ask", "独角兽", "--mode", "magic"])
    assert bad.exit_code == 2 and "mode must be one of" in bad.output
    missing = runner.invoke(app, ["remove", "no-such-doc"])
    assert missing.exit_code == 2 and "not in the index" in missing.output
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ")
    refused = runner.invoke(
        app, ["add", str(exe), "--id", "x", "--title-zh", "x", "--title-en", "x"]
    )
    assert refused.exit_code == 2 and "unsupported" in refused.output
