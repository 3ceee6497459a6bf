"""Test-wide setup: offscreen Qt, a private data folder, few threads, no leaked workers."""

from __future__ import annotations

import os
import tempfile

# Before anything imports Qt or torch.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")
_DATA_DIR = tempfile.mkdtemp(prefix="workbench-test-data-")
os.environ["WORKBENCH_DATA_DIR"] = _DATA_DIR
os.environ["XDG_CONFIG_HOME"] = os.path.join(_DATA_DIR, "config")

# Before anything imports sounddevice: PortAudio reads the ALSA configuration once, so the
# virtual file-backed sound card must be selected first (see tests/alsa_virtual.py).
from tests import alsa_virtual  # noqa: E402

alsa_virtual.install(os.path.join(_DATA_DIR, "alsa"))

import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_worker_left_running():
    """Every test must leave no background worker running (napari/superqt practice)."""
    yield
    if "PySide6.QtCore" in sys.modules:
        from PySide6.QtCore import QThreadPool

        pool = QThreadPool.globalInstance()
        assert pool.waitForDone(30000), "a background worker was still running after the test"
