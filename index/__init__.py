"""Corpus to searchable index: loading, normalising, chunking, embedding and retrieval."""
