"""Model-card facts read off a run folder's metrics."""

from __future__ import annotations

import json
from pathlib import Path

from models.model_card import render_facts, run_history


def test_run_history_keeps_the_final_training_time_across_a_resume(tmp_path: Path) -> None:
    rows = [
        {"step": 10, "split": "train", "wall_time": 5.0},
        {"step": 20, "split": "valid", "metrics": {"si_sdri": 1.5}, "wall_time": 9.0},
        # Killed after step 20's checkpoint at 8 s: the resumed series starts from there.
        {"step": 30, "split": "train", "wall_time": 14.0},
    ]
    lines = [json.dumps(row) for row in rows]
    lines.insert(2, '{"step": 25, "spl')  # a line cut by the kill
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    history = run_history(tmp_path)
    assert history == {
        "steps": 30,
        "wall_seconds": 14.0,
        "last_valid": {"step": 20, "si_sdri": 1.5},
    }


def test_rendered_facts_state_size_and_rate() -> None:
    text = render_facts(
        {
            "model_name": "mtass",
            "preset": "small",
            "parameters": 1234567,
            "sample_rate": 16000,
            "macs_per_second": 2.5e9,
            "weights_bytes": 3 * 2**20,
            "best_metrics": {"si_sdri": 4.25},
            "best_step": 100,
        }
    )
    assert "| parameters | 1,234,567 |" in text and "| MACs per second of audio | 2.500 G |" in text
    assert "| weights file | 3.00 MiB |" in text and "`si_sdri` | 4.250 |" in text
