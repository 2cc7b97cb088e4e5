"""The one settings object, read from ``POLICY_QA_*`` environment variables.

Every stage (index build, retriever, service, evaluation) takes a ``Settings``; nothing
reads the environment anywhere else, so a test can build any configuration by value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "default"
"""Sentinel for the locally built multilingual-e5-small (see ``index/model_build.py``)."""


class Settings(BaseSettings):
    """Configuration for building, searching and serving the index."""

    model_config = SettingsConfigDict(
        env_prefix="POLICY_QA_",
        env_file=None,
        extra="ignore",
        validate_default=True,
        populate_by_name=True,
    )

    # --- where things live -------------------------------------------------------------
    corpus_dir: Path = Field(PROJECT_ROOT / "corpus", description="Catalog + sources.")
    data_dir: Path = Field(PROJECT_ROOT / "var", description="Built model, index, reports.")
    models_dir: Path | None = Field(
        None, description="Where the default model is built; defaults to data_dir/models."
    )

    # --- embedding model ---------------------------------------------------------------
    model: str = Field(
        DEFAULT_MODEL,
        description="'default' (local multilingual-e5-small), a local path or a hub id.",
    )
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    embed_batch_size: int = Field(32, ge=1, le=1024)
    torch_threads: int = Field(0, ge=0, description="0 = auto: one thread per model call.")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        # WEB_CONCURRENCY is what uvicorn itself reads for its worker count.
        validation_alias=AliasChoices("POLICY_QA_WORKERS", "WEB_CONCURRENCY"),
        description="Server processes sharing this machine (uvicorn --workers). Each runs at "
        "most cpus // (workers x torch threads) model calls at once, so the cores are never "
        "oversubscribed and queued questions are answered first come, first served.",
    )
    mmap_index: bool = Field(
        True,
        description="Memory-map the saved index (FAISS vectors, BM25 arrays) instead of "
        "reading it into each process: workers share one copy through the page cache.",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Precision the model runs in (passages and questions). auto = bfloat16 "
        "where the CPU declares native bfloat16 (avx512_bf16 or amx_bf16), else float32.",
    )

    # --- where the index lives --------------------------------------------------------
    store: Literal["local", "milvus"] = Field(
        "local",
        description="local: this machine's FAISS + BM25 snapshots under data_dir (each "
        "process holds one). milvus: one Milvus collection that every replica shares.",
    )
    milvus_uri: str = Field(
        "",
        description="A Milvus Lite folder (path ending in .db, opened in process), or a "
        "server such as http://host:19530; empty = data_dir/milvus.db.",
    )
    milvus_token: SecretStr | None = Field(None, description="Milvus credentials (user:password).")
    milvus_collection: str = Field(
        "policy_qa", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$", description="Collection name."
    )
    milvus_timeout_s: float = Field(
        5.0, gt=0, description="Per Milvus call: past it the request is answered 503."
    )

    # --- chunking (chosen by measurement on the dev set; see README) --------------------
    chunk_size: int = Field(400, ge=50, le=4000)
    chunk_overlap: int = Field(80, ge=0, le=1000)
    min_chunk_chars: int = Field(40, ge=1)

    # --- indexes and retrieval ---------------------------------------------------------
    index_type: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(1.0, ge=0.0)
    lexical_weight: float = Field(2.0, ge=0.0)
    candidates: int = Field(50, ge=1, le=1000, description="Per-retriever depth before fusion.")
    named_document_bonus: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Added to the fused score of passages of a document the question names "
        "by kind ('the work plan', '这份方案'); chosen on the dev split.",
    )
    glossary_expansion: bool = True

    # --- answers -----------------------------------------------------------------------
    no_answer_min_cosine_zh: float = Field(
        0.88, ge=0.0, le=1.0, description="Below this best sentence cosine: no answer (zh)."
    )
    no_answer_min_cosine_en: float = Field(
        0.76, ge=0.0, le=1.0, description="The same for English questions (cross-lingual)."
    )

    # --- service -----------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_key: SecretStr | None = Field(None, description="Bearer key for /v1/admin; unset = off.")
    retrieval_keys: list[SecretStr] = Field(
        default_factory=list, description="Bearer keys for the Dify-compatible /retrieval."
    )
    site_keys: list[str] = Field(
        default_factory=lambda: ["demo-site-key"],
        description="Public widget keys (identify a site; not secrets).",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Other origins allowed to call the API from a browser."
    )
    rate_limit_per_minute: int = Field(120, ge=1, description="Per client address.")
    site_rate_limit_per_minute: int = Field(600, ge=1, description="Per widget site key.")
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_question_chars: int = Field(2000, ge=10)
    request_timeout_s: float = Field(30.0, gt=0)
    retrieval_max_in_flight: int = Field(
        64,
        ge=1,
        le=1000,
        description="/retrieval requests one worker answers at once; the next is refused at "
        "once with 429. Dify waits 5 s and retries 429, 5xx and timeouts after 0.5, 1 and 2 s: "
        "a bounded queue keeps every answer well inside its timeout, and a refusal costs the "
        "server nothing, so retries cannot pile abandoned work on it.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self

    @property
    def catalog_path(self) -> Path:
        return self.corpus_dir / "catalog.json"

    @property
    def glossary_path(self) -> Path:
        return self.corpus_dir / "glossary.tsv"

    @property
    def vocabulary_path(self) -> Path:
        return self.corpus_dir / "vocabulary.tsv"

    @property
    def index_root(self) -> Path:
        return self.data_dir / "index"

    @property
    def milvus_address(self) -> str:
        """The Milvus URI to connect to (a Lite folder by default)."""
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def default_model_dir(self) -> Path:
        return (self.models_dir or self.data_dir / "models") / "multilingual-e5-small"
