"""Retrieval evaluation: gold questions, metrics, runner and report."""
