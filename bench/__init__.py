"""Benchmarks for `make bench`: each section module has ``run() -> str`` returning Markdown."""
