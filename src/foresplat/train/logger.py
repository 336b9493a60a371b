"""Run logs: one JSON object per line in metrics.jsonl (and optional TensorBoard scalars).

On resume from the checkpoint of step S, lines after S (left by the interrupted run) are dropped
first, so the file reads like the log of one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from foresplat.io import atomic_write_text


class MetricsLogger:
    """Appends {"iteration": i, ...} records to `path`; mirrors numeric values to TensorBoard if asked."""

    def __init__(self, path: str | Path, resume_from: int | None = None, tensorboard_dir: str | Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is not None and self.path.is_file():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("iteration", -1) <= resume_from]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif resume_from is None and self.path.is_file():
            self.path.unlink()
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("TrainConfig.tensorboard=True needs the tensorboard package "
                                  "(pip install tensorboard)") from e
            self._tb = SummaryWriter(str(tensorboard_dir))

    def log(self, record: dict[str, Any]) -> None:
        """Writes one record (must contain "iteration"); non-finite floats are written as null."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()
        if self._tb is not None:
            step = int(record["iteration"])
            for k, v in record.items():
                if k != "iteration" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
