"""Graceful stop of a training (or refinement) loop on SIGINT / SIGTERM.

    with StopOnSignal() as stop:
        for it in ...:
            step(...)
            if stop.requested(info):   # all ranks agree (one all-reduce when distributed)
                save(); raise ...

The first signal only sets a flag (the loop saves a checkpoint after the running iteration and
stops); a second SIGINT/SIGTERM restores the previous handlers and raises KeyboardInterrupt at
once. Handlers are installed only in the main thread (elsewhere `requested` is always False
unless `request` is called) and restored on exit.
"""

from __future__ import annotations

import signal
import sys
import threading

import torch

__all__ = ["StopOnSignal"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """Context manager turning the first SIGINT/SIGTERM into a stop request (see module)."""

    def __init__(self, on_stop: str = "saving a checkpoint after this iteration, then stopping "
                                      "(send it again to abort without saving)"):
        """on_stop: what the first signal's stderr line says will happen."""
        self.on_stop = on_stop
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:  # noqa: ARG002 (signal handler signature)
        if self.signal_name is not None:  # second signal: abort now
            self._restore()
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        print(f"\n{self.signal_name}: {self.on_stop}", file=sys.stderr, flush=True)

    def request(self, name: str = "request") -> None:
        """Asks the loop to stop as a signal would (for tests and embedding code)."""
        self.signal_name = self.signal_name or name

    def requested(self, info=None) -> bool:
        """True once a stop was requested; with a DistInfo of world_size > 1, True on every rank as
        soon as any rank got one (a collective: call it on all ranks at the same point)."""
        flag = self.signal_name is not None
        if info is not None and getattr(info, "world_size", 1) > 1:
            t = torch.tensor([1.0 if flag else 0.0], device=info.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            if float(t) > 0 and not flag:
                self.signal_name = "a signal on another rank"
            return float(t) > 0
        return flag

    def _restore(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._previous = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
