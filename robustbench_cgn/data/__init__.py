"""Data construction and loading shared by plugins and benchmarks."""
