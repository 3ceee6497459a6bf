"""Export dialog: which tracks, where, which format, a naming template, and what to do when
a file already exists (never a silent overwrite)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workbench.audio.io import EXPORT_FORMATS, choose_subtype
from workbench.export_names import DEFAULT_TEMPLATE, FIELDS, render_name, unique_path
from workbench.session import Track
from workbench.tasks import ExportItem

CONFLICT_POLICIES = {
    "number": "Add a number to the new file's name",
    "skip": "Skip that track",
    "overwrite": "Replace the existing file",
}
SUBTYPE_CHOICES = ("same as source", "PCM_16", "PCM_24", "FLOAT")


def plan_export(
    tracks: list[Track],
    folder: Path,
    extension: str,
    template: str,
    conflict: str = "number",
    subtype_choice: str = "same as source",
) -> tuple[list[ExportItem], list[str]]:
    """Decide the files to write.

    Returns:
        ``(items, notes)``: what to write, and plain notes about skipped files.
    """
    fmt = EXPORT_FORMATS[extension][0]
    items: list[ExportItem] = []
    notes: list[str] = []
    taken: set[Path] = set()
    for index, track in enumerate(tracks, start=1):
        mixture = track.path.stem if track.path is not None else track.name
        name = render_name(
            template,
            track=track.name,
            mixture=mixture,
            index=index,
            rate=track.sample_rate,
            extension=extension,
        )
        path = folder / name
        overwrite = False
        if path.exists() or path in taken:
            if conflict == "skip":
                notes.append(f"Skipped {track.name}: {path.name} already exists.")
                continue
            if conflict == "overwrite" and path not in taken:
                overwrite = True
            else:
                path = unique_path(path, taken)
        taken.add(path)
        if subtype_choice == "same as source":
            subtype = choose_subtype(fmt, track.source_subtype)
        elif fmt == "OGG":
            subtype = "VORBIS"
        elif fmt == "FLAC" and subtype_choice == "FLOAT":
            subtype = "PCM_24"
        else:
            subtype = subtype_choice
        samples = track.samples if track.gain == 1.0 else track.samples * track.gain
        items.append(ExportItem(path, samples, track.sample_rate, subtype, overwrite))
    return items, notes


class ExportDialog(QDialog):
    """Pick tracks, folder, format, template and conflict policy."""

    def __init__(
        self,
        tracks: list[Track],
        selected: list[Track],
        folder: Path,
        template: str = DEFAULT_TEMPLATE,
        extension: str = "wav",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export tracks")
        self.tracks = tracks
        self.track_list = QListWidget()
        for track in tracks:
            item = QListWidgetItem(f"{track.name}  ({track.sample_rate} Hz, {track.channels} ch)")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if track in selected else Qt.CheckState.Unchecked
            )
            self.track_list.addItem(item)
        self.folder_edit = QLineEdit(str(folder))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        self.format_box = QComboBox()
        for ext in EXPORT_FORMATS:
            self.format_box.addItem(ext.upper(), ext)
        self.format_box.setCurrentIndex(max(list(EXPORT_FORMATS).index(extension), 0))
        self.subtype_box = QComboBox()
        self.subtype_box.addItems(SUBTYPE_CHOICES)
        self.template_edit = QLineEdit(template)
        self.template_edit.setToolTip("Fields: " + ", ".join("{" + f + "}" for f in FIELDS))
        self.conflict_box = QComboBox()
        for key, text in CONFLICT_POLICIES.items():
            self.conflict_box.addItem(text, key)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        for signal in (
            self.template_edit.textChanged,
            self.folder_edit.textChanged,
            self.format_box.currentIndexChanged,
            self.conflict_box.currentIndexChanged,
            self.track_list.itemChanged,
        ):
            signal.connect(self._update_preview)
        form = QFormLayout()
        form.addRow("Folder", folder_row)
        form.addRow("Format", self.format_box)
        form.addRow("Samples", self.subtype_box)
        form.addRow("Name", self.template_edit)
        form.addRow("If a file exists", self.conflict_box)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Tracks"))
        layout.addWidget(self.track_list)
        layout.addLayout(form)
        layout.addWidget(self.preview)
        layout.addWidget(self.buttons)
        self._update_preview()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def selected_tracks(self) -> list[Track]:
        return [
            track
            for row, track in enumerate(self.tracks)
            if self.track_list.item(row).checkState() == Qt.CheckState.Checked
        ]

    def plan(self) -> tuple[list[ExportItem], list[str]]:
        return plan_export(
            self.selected_tracks(),
            Path(self.folder_edit.text()).expanduser(),
            self.format_box.currentData(),
            self.template_edit.text(),
            self.conflict_box.currentData(),
            self.subtype_box.currentText(),
        )

    def _update_preview(self, *_: object) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        try:
            items, notes = self.plan()
        except ValueError as exc:
            self.preview.setText(f"<span style='color:#e57373'>{exc}</span>")
            ok.setEnabled(False)
            return
        names = ", ".join(item.path.name for item in items[:6])
        more = f" and {len(items) - 6} more" if len(items) > 6 else ""
        self.preview.setText(
            f"Will write: {names}{more}" + ("\n" + "\n".join(notes) if notes else "")
        )
        ok.setEnabled(bool(items))
