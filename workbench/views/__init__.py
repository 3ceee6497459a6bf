"""Windows, panels and plots. Nothing here imports torch or ``models``: work goes through
``workbench.workers`` and results come back as signals."""
