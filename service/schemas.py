"""Request and response bodies, with their limits and bilingual examples."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from index.metadata_filter import FieldName, Operator

Mode = Literal["hybrid", "dense", "lexical"]
# C0/C1 controls (but tab and newlines) and lone UTF-16 surrogates cannot be a question.
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_FORBIDDEN = re.compile(rf"[{_CONTROLS}\ud800-\udfff]")
# The whitespace ``str.strip`` removes, less those controls. Spelled out: ``\s`` differs
# between regex engines (ASCII-only in some, U+FEFF included in ECMA).
_SPACES = r"\t\n\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The rule for the schema: no such control, and one character that is not whitespace.
# Documentation only (``json_schema_extra``): ``clean_text`` enforces it. Surrogates stay
# out: ECMA and Rust validators refuse a pattern naming them, and JSON cannot carry one alone.
CLEAN_TEXT_PATTERN = rf"^[^{_CONTROLS}]*[^{_CONTROLS}{_SPACES}][^{_CONTROLS}]*$"
CLEAN_TEXT: JsonDict = {"pattern": CLEAN_TEXT_PATTERN}
CLEAN_OR_EMPTY: JsonDict = {"pattern": rf"^[^{_CONTROLS}]*$"}
"""The same, for text that may be empty (or all whitespace, which counts as empty)."""
DocId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
# The limits of a question, shared by /v1/ask and the MCP tool.
Question = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        description="Chinese or English.",
        json_schema_extra=CLEAN_TEXT,
    ),
]
TopK = Annotated[int, Field(ge=1, le=20, description="How many passages to return.")]
DocIds = Annotated[
    list[DocId] | None,
    Field(min_length=1, max_length=50, description="Only search these documents."),
]


def clean_text(value: str, *, field: str) -> str:
    """Trim, and refuse empty text, control characters and unpaired surrogates."""
    if _FORBIDDEN.search(value):
        raise ValueError(f"{field} contains control characters or unpaired surrogates")
    value = value.strip()
    if not value:
        raise ValueError(f"{field} must not be empty")
    return value


class AskRequest(BaseModel):
    """A question; everything but ``question`` is optional."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "北京独角兽企业有多少家？", "top_k": 3},
                {"question": "How many unicorn companies does Beijing have?", "top_k": 5},
                {
                    "question": "What R&D intensity does the 2023 work plan target?",
                    "top_k": 3,
                    "doc_ids": ["most-plan-2023-41"],
                    "mode": "hybrid",
                },
            ]
        },
    )

    question: Question
    top_k: TopK = 5
    lang: Literal["zh", "en"] | None = Field(
        None, description="Override the detected question language."
    )
    doc_ids: DocIds = None
    mode: Mode = Field("hybrid", description="hybrid (default), dense or lexical retrieval.")

    @field_validator("question")
    @classmethod
    def _clean_question(cls, value: str) -> str:
        return clean_text(value, field="question")


class Problem(BaseModel):
    """One reason a request was refused (FastAPI's validation errors)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: a message, or for a request that fails validation, its problems."""

    detail: str | list[Problem]


class Span(BaseModel):
    """A character range in the document's normalised text."""

    start: int
    end: int


class Passage(BaseModel):
    rank: int
    chunk_id: str
    doc_id: str
    title: str
    section: str = Field(description="Heading path, e.g. 三、主要任务 › （一）… › 2. …")
    text: str = Field(description="Verbatim: equals document text[start:end].")
    score: float = Field(description="Fused score; 1.0 = ranked first by every retriever.")
    start: int
    end: int
    dense_score: float | None = None
    lexical_score: float | None = None
    highlights: list[Span] = Field(
        default_factory=list, description="Answer sentence(s) inside this passage."
    )
    best_sentence: Span | None = Field(
        None, description="The passage's sentence closest to the question (dense modes)."
    )


class Quote(BaseModel):
    """A verbatim piece of a document."""

    doc_id: str
    start: int
    end: int
    text: str = Field(description="Verbatim: equals document text[start:end].")
    rank: int | None = Field(
        description="Rank of the returned passage it is quoted from; null when none holds it."
    )


class Gloss(BaseModel):
    text: str = Field(description="As written in the answer (or the catalog).")
    english: str


class ReadingAid(BaseModel):
    """For English questions: help reading the Chinese answer, nothing generated."""

    terms: list[Gloss] = Field(description="Glossary English for the answer's Chinese terms.")
    figures: list[Gloss] = Field(description="The answer's figures with their units, in English.")
    catalog: list[Gloss] = Field(description="The catalog's English, for catalog answers.")


class Answer(BaseModel):
    text: str = Field(description="Sentence(s) quoted from the passages, with [n] markers.")
    citations: list[int] = Field(description="Ranks of the passages the answer quotes.")
    source: Literal["passages", "catalog"] = Field(
        description="passages, or the catalog for a question about a document itself."
    )
    quotes: list[Quote] = Field(description="The quoted pieces, with their offsets.")
    reading_aid: ReadingAid | None = None


class Finding(BaseModel):
    reason: Literal["unknown_name", "year", "figure", "catalog", "weak", "no_passages"]
    detail: str = Field(description="The name, year or kind of figure the reason is about.")


class NotStated(BaseModel):
    """Why there is no answer: the documents do not state what was asked."""

    message: str = Field(description="Said plainly, in the question's language.")
    findings: list[Finding]


class AskResponse(BaseModel):
    question: str
    language: Literal["zh", "en"]
    language_detail: str = Field(description="zh, zh-Hant, en or mixed.")
    answer: Answer | None
    no_answer: bool
    not_stated: NotStated | None = Field(
        None, description="Set with no_answer: the documents do not state it, and why."
    )
    support: float = Field(
        description="How much of the question the closest sentences share; answers below the "
        "service's operating point are not given."
    )
    passages: list[Passage]
    expansions: list[str] = Field(default_factory=list, description="Glossary terms added.")
    timings_ms: dict[str, float] = Field(default_factory=dict)


class DocumentSummary(BaseModel):
    id: str
    title_zh: str
    title_en: str
    issuer: str
    date: str | None
    number: str | None
    language: str
    characters: int
    passages: int


class DocumentDetail(DocumentSummary):
    text: str = Field(description="The normalised text every offset refers to.")


class DocumentList(BaseModel):
    documents: list[DocumentSummary]


class ChunkDetail(BaseModel):
    chunk_id: str
    doc_id: str
    ordinal: int
    section: str
    start: int
    end: int
    text: str


class ChunkList(BaseModel):
    chunks: list[ChunkDetail]


class IndexStatus(BaseModel):
    version: str | None
    documents: int
    passages: int
    model: str
    index_type: str


# --- Dify external knowledge API (POST /retrieval) -------------------------------------


class DifyRetrievalSetting(BaseModel):
    top_k: int | None = Field(
        None, ge=1, le=20, description="null (a knowledge base without retrieval settings): 5."
    )
    score_threshold: float | None = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Records scoring below it are left out; 0.0 (Dify's threshold off) keeps "
        "them all. 0.5 is the documented threshold for a relevant passage.",
    )


MetadataField = FieldName


class DifyCondition(BaseModel):
    name: MetadataField | list[MetadataField] = Field(
        description="A catalog field (a list: any of them)."
    )
    comparison_operator: Operator
    value: str | int | float | list[str] | None = None


class DifyMetadataCondition(BaseModel):
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[DifyCondition] = Field(max_length=50)


class DifyRetrievalRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "knowledge_id": "policy-qa",
                    "query": "北京独角兽企业有多少家？",
                    "retrieval_setting": {"top_k": 3, "score_threshold": 0.5},
                },
                {
                    "knowledge_id": "policy-qa",
                    "query": "What R&D intensity does the work plan target?",
                    "retrieval_setting": {"top_k": 5, "score_threshold": 0.5},
                    "metadata_condition": {
                        "logical_operator": "and",
                        "conditions": [
                            {"name": "date", "comparison_operator": "after", "value": "2023-01-01"}
                        ],
                    },
                },
            ]
        }
    )

    knowledge_id: str = Field(
        max_length=64, description="policy-qa for the whole corpus, or one document id."
    )
    query: str = Field(
        max_length=2000,
        description="Empty (Dify's registration check) finds nothing: 200 with no records.",
        json_schema_extra=CLEAN_OR_EMPTY,
    )
    retrieval_setting: DifyRetrievalSetting = Field(default_factory=DifyRetrievalSetting)
    metadata_condition: DifyMetadataCondition | None = None

    @field_validator("query")
    @classmethod
    def _clean_query(cls, value: str) -> str:
        return clean_text(value, field="query") if value.strip() else ""


class DifyRecord(BaseModel):
    content: str
    score: float = Field(
        description="Calibrated relevance in [0, 1]: at or above 0.5 the passage is relevant."
    )
    title: str
    metadata: dict[str, object] = Field(
        description="document_id, doc_id (unique per passage), title, section, start, end, "
        "url (the passage under /v1/documents), issuer and date."
    )


class DifyRetrievalResponse(BaseModel):
    records: list[DifyRecord]


class DifyErrorBody(BaseModel):
    """Dify's error dialect (see service/errors.py for the codes)."""

    error_code: int
    error_msg: str
