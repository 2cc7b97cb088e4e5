"""Answering: the quoted answer to a question, or why the documents do not state it."""

from index.answer.answerer import Answer, Answerer, Quote, Source
from index.answer.decide import Finding, Reason
from index.answer.reading_aid import Gloss, ReadingAid

__all__ = ["Answer", "Answerer", "Finding", "Gloss", "Quote", "ReadingAid", "Reason", "Source"]
