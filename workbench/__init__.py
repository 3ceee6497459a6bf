"""Audio Workbench: the desktop application, its command line and its jobs.

Views (``workbench.views``) never import torch; they reach the models in ``models/`` through
``workbench.workers`` and the facades, so the window stays responsive and testable.
"""

__version__ = "0.1.0"
