"""Pure PyTorch: architectures, losses, metrics, data, training and search.

Never imports Qt, pyqtgraph, sounddevice or ``workbench`` (an import-linter contract checks it).
"""
