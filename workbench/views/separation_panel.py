"""Separation panel: choose the model family, build the prompt list, pick bundle and device.

The panel only describes the request; the window runs it in a worker and adds the stems as
tracks. TUSS accepts any number of prompts, repeats included (two ``speech`` prompts for
two talkers); the output order is the prompt order.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workbench.separation_request import FAMILIES, PROMPTS, SeparationRequest


class SeparationPanel(QWidget):
    """Signals:
    separateRequested(SeparationRequest): the user pressed Separate.
    """

    separateRequested = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.bundles: list[dict] = []
        self.track_box = QComboBox()
        self.track_box.setToolTip("The track to separate")
        self.family_box = QComboBox()
        for key, label in FAMILIES.items():
            self.family_box.addItem(label, key)
        self.family_box.currentIndexChanged.connect(self._on_family)
        self.bundle_box = QComboBox()
        self.bundle_box.setToolTip("Shipped bundles, and models you trained in the Jobs panel")
        self.device_box = QComboBox()
        for label, key in (
            ("Automatic (GPU if present)", "auto"),
            ("CPU", "cpu"),
            ("GPU (CUDA)", "cuda"),
        ):
            self.device_box.addItem(label, key)

        self.prompt_picker = QComboBox()
        self.prompt_picker.addItems(PROMPTS)
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(lambda: self.add_prompt(self.prompt_picker.currentText()))
        self.prompt_list = QListWidget()
        self.prompt_list.setToolTip("One output per prompt, in this order. Repeats are allowed.")
        self.remove_button = QPushButton("Remove")
        self.up_button = QPushButton("Up")
        self.down_button = QPushButton("Down")
        self.remove_button.clicked.connect(self.remove_selected)
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        picker_row = QHBoxLayout()
        picker_row.addWidget(self.prompt_picker, 1)
        picker_row.addWidget(self.add_button)
        edit_row = QHBoxLayout()
        for button in (self.remove_button, self.up_button, self.down_button):
            edit_row.addWidget(button)
        self.prompt_box = QWidget()
        prompt_layout = QVBoxLayout(self.prompt_box)
        prompt_layout.setContentsMargins(0, 0, 0, 0)
        prompt_layout.addWidget(QLabel("Prompts"))
        prompt_layout.addLayout(picker_row)
        prompt_layout.addWidget(self.prompt_list)
        prompt_layout.addLayout(edit_row)

        self.residual_box = QCheckBox("Add a residual track (mixture minus all outputs)")
        self.residual_box.setChecked(True)
        self.separate_button = QPushButton("Separate")
        self.separate_button.setToolTip("Separate the selected track (Ctrl+Shift+S)")
        self.separate_button.clicked.connect(self._emit)
        self.note = QLabel()
        self.note.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Track", self.track_box)
        form.addRow("Model", self.family_box)
        form.addRow("Bundle", self.bundle_box)
        form.addRow("Device", self.device_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.prompt_box)
        layout.addWidget(self.residual_box)
        layout.addWidget(self.separate_button)
        layout.addWidget(self.note)
        layout.addStretch(1)
        for prompt in ("speech", "sfx-mix", "music-mix"):
            self.add_prompt(prompt)
        self._on_family()

    # ------------------------------------------------------------------ prompts
    def prompts(self) -> list[str]:
        return [self.prompt_list.item(i).text() for i in range(self.prompt_list.count())]

    def set_prompts(self, prompts: list[str]) -> None:
        self.prompt_list.clear()
        for prompt in prompts:
            self.add_prompt(prompt)

    def add_prompt(self, prompt: str) -> None:
        if prompt in PROMPTS:
            self.prompt_list.addItem(prompt)

    def remove_selected(self) -> None:
        row = self.prompt_list.currentRow()
        if row >= 0:
            self.prompt_list.takeItem(row)

    def move_selected(self, offset: int) -> None:
        row = self.prompt_list.currentRow()
        target = row + offset
        if row < 0 or not 0 <= target < self.prompt_list.count():
            return
        item = self.prompt_list.takeItem(row)
        self.prompt_list.insertItem(target, item)
        self.prompt_list.setCurrentRow(target)

    # ------------------------------------------------------------------ bundles
    def set_bundles(self, bundles: list[dict]) -> None:
        """Available bundles: dicts with ``name``, ``family``, ``trained``, ``path``."""
        self.bundles = bundles
        self._on_family()

    def _on_family(self, *_: object) -> None:
        family = self.family_box.currentData()
        self.prompt_box.setVisible(family == "tuss")
        self.bundle_box.clear()
        for bundle in self.bundles:
            if bundle.get("family") == family:
                label = bundle["name"] + ("" if bundle.get("trained", True) else " (untrained)")
                self.bundle_box.addItem(label, bundle.get("path", ""))
        if self.bundle_box.count() == 0:
            self.bundle_box.addItem("default", "")
        untrained = [
            b for b in self.bundles if b.get("family") == family and not b.get("trained", True)
        ]
        self.note.setText(
            "This model has not been trained yet: its output is not meaningful."
            if untrained and self.bundle_box.currentText().endswith("(untrained)")
            else ""
        )

    def set_tracks(self, tracks: list[tuple[int, str]]) -> None:
        """``(track id, label)`` pairs; the selection is kept when still present."""
        current = self.track_box.currentData()
        self.track_box.clear()
        for track_id, label in tracks:
            self.track_box.addItem(label, track_id)
        index = self.track_box.findData(current)
        if index >= 0:
            self.track_box.setCurrentIndex(index)
        self.separate_button.setEnabled(bool(tracks))

    def request(self) -> SeparationRequest:
        family = self.family_box.currentData()
        return SeparationRequest(
            track_id=self.track_box.currentData(),
            family=family,
            bundle=self.bundle_box.currentData() or "",
            prompts=tuple(self.prompts()) if family == "tuss" else (),
            device=self.device_box.currentData(),
            residual=self.residual_box.isChecked(),
        )

    def _emit(self) -> None:
        request = self.request()
        if request.family == "tuss" and not request.prompts:
            self.note.setText("Add at least one prompt.")
            return
        self.separateRequested.emit(request)
