"""``python -m workbench`` is the same as the ``workbench`` console script (used by torchrun)."""

from workbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
