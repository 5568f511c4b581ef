"""cgnbench: a pluggable OOD robustness benchmark harness."""
