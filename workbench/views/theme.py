"""Dark and light themes (Fusion style with a palette), applied app-wide."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")


def apply_theme(app: QApplication, name: str) -> str:
    """Apply ``name`` (``"dark"`` or ``"light"``; anything else means dark) and return it."""
    name = name if name in THEMES else "dark"
    app.setStyle("Fusion")
    palette = QPalette()
    if name == "dark":
        colors = {
            QPalette.ColorRole.Window: "#2b2b2e",
            QPalette.ColorRole.WindowText: "#e6e6e6",
            QPalette.ColorRole.Base: "#1e1e21",
            QPalette.ColorRole.AlternateBase: "#2f2f33",
            QPalette.ColorRole.ToolTipBase: "#3a3a3f",
            QPalette.ColorRole.ToolTipText: "#e6e6e6",
            QPalette.ColorRole.Text: "#e6e6e6",
            QPalette.ColorRole.Button: "#36363a",
            QPalette.ColorRole.ButtonText: "#e6e6e6",
            QPalette.ColorRole.BrightText: "#ff5555",
            QPalette.ColorRole.Highlight: "#3d7bd9",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Link: "#6aa5ff",
            QPalette.ColorRole.PlaceholderText: "#8a8a8a",
        }
        plot_background, plot_foreground = "#1a1a1d", "#cfcfcf"
    else:
        colors = {
            QPalette.ColorRole.Window: "#f0f0f0",
            QPalette.ColorRole.WindowText: "#1a1a1a",
            QPalette.ColorRole.Base: "#ffffff",
            QPalette.ColorRole.AlternateBase: "#f5f5f5",
            QPalette.ColorRole.ToolTipBase: "#ffffdc",
            QPalette.ColorRole.ToolTipText: "#1a1a1a",
            QPalette.ColorRole.Text: "#1a1a1a",
            QPalette.ColorRole.Button: "#e6e6e6",
            QPalette.ColorRole.ButtonText: "#1a1a1a",
            QPalette.ColorRole.BrightText: "#c00000",
            QPalette.ColorRole.Highlight: "#2d6fd0",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Link: "#1d5fc0",
            QPalette.ColorRole.PlaceholderText: "#7a7a7a",
        }
        plot_background, plot_foreground = "#ffffff", "#303030"
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    app.setPalette(palette)
    pg.setConfigOption("background", plot_background)
    pg.setConfigOption("foreground", plot_foreground)
    return name


def waveform_color(name: str) -> str:
    return "#4fc3f7" if name == "dark" else "#1565c0"
