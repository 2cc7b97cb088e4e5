"""Which documents a metadata condition selects, over the catalog's fields.

Dify's External Knowledge API passes ``metadata_condition``: conditions on named metadata
fields, joined by ``and`` or ``or``. Passages carry their document's catalog entry, so the
fields are the catalog's: ``document_id``, ``title`` (Chinese or English), ``issuer`` and
``date`` (ISO ``YYYY-MM-DD``). A condition on any other field, or with an operator its
field cannot take, is refused with a message saying what is allowed: a filter that were
silently ignored would return passages the caller excluded.

A field with several values (a title in two languages) meets a condition when one of its
values does; the negative operators (``not contains``, ``is not``, ``not in``, ``≠``, ``not
empty``) are exactly the negations of their positive ones. A document without a date
meets no date comparison, and so every negated one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from index.documents import DocumentMeta
from index.errors import InvalidInputError

Value = str | int | float | list[str] | None
LogicalOperator = Literal["and", "or"]
FieldName = Literal["document_id", "title", "issuer", "date"]
"""The catalog fields a condition may name (the keys of ``FIELDS``)."""
Operator = Literal[
    "contains",
    "not contains",
    "start with",
    "end with",
    "is",
    "is not",
    "in",
    "not in",
    "empty",
    "not empty",
    "=",
    "≠",
    ">",
    "<",
    "≥",
    "≤",
    "before",
    "after",
]
"""Dify's comparison operators (``OPERATORS``, by kind)."""

FIELDS: dict[str, Callable[[DocumentMeta], list[str]]] = {
    "document_id": lambda meta: [meta.id],
    "title": lambda meta: [meta.title_zh, meta.title_en],
    "issuer": lambda meta: [meta.issuer] if meta.issuer else [],
    "date": lambda meta: [meta.date] if meta.date else [],
}
TEXT_OPERATORS = ("contains", "start with", "end with", "is", "in", "empty")
DATE_OPERATORS = ("=", ">", "<", "≥", "≤", "before", "after")
NEGATIONS = {
    "not contains": "contains",
    "is not": "is",
    "not in": "in",
    "not empty": "empty",
    "≠": "=",
}
OPERATORS = (*TEXT_OPERATORS, *DATE_OPERATORS, *NEGATIONS)


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition: ``name`` (a field, or a list of fields any of which may meet it)."""

    name: str | Sequence[str]
    operator: str
    value: Value = None


def select_documents(
    documents: Iterable[DocumentMeta],
    conditions: list[Condition],
    logical_operator: LogicalOperator = "and",
) -> list[str]:
    """The ids of the documents that meet the conditions (all of them for no condition).

    Raises:
        InvalidInputError: an unknown field or operator, an operator the field cannot take,
            or a value the operator cannot use.
    """
    tests = [_test(condition) for condition in conditions]
    join = all if logical_operator == "and" else any
    return [meta.id for meta in documents if not tests or join(test(meta) for test in tests)]


def _test(condition: Condition) -> Callable[[DocumentMeta], bool]:
    names = [condition.name] if isinstance(condition.name, str) else list(condition.name)
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise InvalidInputError(
            f"metadata_condition: unknown field {', '.join(unknown) or '(none)'}; the fields "
            f"are {', '.join(FIELDS)}"
        )
    operator = condition.operator
    positive = NEGATIONS.get(operator, operator)
    if positive not in (*TEXT_OPERATORS, *DATE_OPERATORS):
        raise InvalidInputError(
            f"metadata_condition: unknown comparison_operator {operator!r}; the operators are "
            f"{', '.join(OPERATORS)}"
        )
    if positive in DATE_OPERATORS and names != ["date"]:
        raise InvalidInputError(
            f"metadata_condition: {operator!r} compares dates: it applies to the field date only"
        )
    match = _matcher(positive, condition.value, operator)

    def test(meta: DocumentMeta) -> bool:
        met = any(match(value) for name in names for value in FIELDS[name](meta))
        if positive == "empty":
            met = not any(FIELDS[name](meta) for name in names)
        return not met if operator in NEGATIONS else met

    return test


def _matcher(operator: str, value: Value, shown: str) -> Callable[[str], bool]:
    """A test of one field value against the condition's value."""
    if operator == "empty":
        return lambda _: False
    if operator in DATE_OPERATORS:
        bound = _date(value, shown)
        compare: dict[str, Callable[[date, date], bool]] = {
            "=": lambda a, b: a == b,
            ">": lambda a, b: a > b,
            "after": lambda a, b: a > b,
            "<": lambda a, b: a < b,
            "before": lambda a, b: a < b,
            "≥": lambda a, b: a >= b,
            "≤": lambda a, b: a <= b,
        }
        return lambda field: compare[operator](_date(field, shown), bound)
    if operator == "in":
        options = _texts(value, shown, many=True)
        return lambda field: field.casefold() in options
    [wanted] = _texts(value, shown, many=False)
    text: dict[str, Callable[[str], bool]] = {
        "contains": lambda field: wanted in field,
        "start with": lambda field: field.startswith(wanted),
        "end with": lambda field: field.endswith(wanted),
        "is": lambda field: field == wanted,
    }
    return lambda field: text[operator](field.casefold())


def _texts(value: Value, operator: str, *, many: bool) -> list[str]:
    """The condition's value as case-folded text: a list for ``in`` (``many``; a
    comma-separated string is a list, as Dify writes one), one item otherwise."""
    if many:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and value:
            return [str(v).casefold() for v in value]
        raise InvalidInputError(f"metadata_condition: {operator!r} needs a list of values")
    if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
        return [str(value).casefold()]
    raise InvalidInputError(f"metadata_condition: {operator!r} needs a text value")


def _date(value: Value, operator: str) -> date:
    """An ISO date (or date-time), or a Unix timestamp in seconds, as Dify stores dates."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=UTC).date()
        if isinstance(value, str):
            return date.fromisoformat(value[:10])
    except (ValueError, OverflowError, OSError):
        pass
    raise InvalidInputError(
        f"metadata_condition: {operator!r} needs a date (YYYY-MM-DD) or a Unix timestamp"
    )
