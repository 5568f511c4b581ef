"""``python -m robustbench_cgn`` is the same as the ``cgnbench`` command."""

from .cli import main

if __name__ == "__main__":
    main()
