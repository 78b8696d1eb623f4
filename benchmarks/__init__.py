"""Benchmarks of the project's compiled steps (see README.md in this folder)."""
