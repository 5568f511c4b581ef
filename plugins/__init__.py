"""Built-in generator and classifier plugins of cgnbench."""
