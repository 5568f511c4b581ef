"""Built-in benchmark definitions of cgnbench."""
