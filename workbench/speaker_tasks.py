"""Speaker operations as background tasks (each opens its own service in the worker thread,
so no SQLite connection or model crosses threads)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from workbench.workers import Progress


def speaker_call(
    method: str,
    *args: Any,
    db_path: str | None = None,
    bundle: str | None = None,
    device: str = "auto",
    **kwargs: Any,
) -> Generator[Progress, None, Any]:
    """Run ``SpeakerService(db_path, bundle, device).<method>(*args, **kwargs)``.

    Arguments that are paths to audio files given as ``("file", path)`` are decoded first,
    so the window can pass files, recordings or track samples alike.
    """
    yield Progress(0.0, "Loading the speaker model")
    from workbench.audio import io
    from workbench.speakers import SpeakerService

    service = SpeakerService(db_path=db_path, bundle=bundle, device=device)
    decoded: list[Any] = []
    for arg in args:
        if isinstance(arg, tuple) and len(arg) == 2 and arg[0] == "file":
            audio = io.load(Path(arg[1]))
            decoded.extend([audio.samples, audio.sample_rate])
        else:
            decoded.append(arg)
    yield Progress(0.3, f"Running {method.replace('_', ' ')}")
    result = getattr(service, method)(*decoded, **kwargs)
    yield Progress(1.0, "Done")
    return {"result": result, "bundle": service.bundle_name, "trained": service.trained}
