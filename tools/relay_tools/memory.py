"""The local stack's memory while it runs (`relay soak`): the peak resident size of moto's server and of the
relay's own process together, sampled every `every` seconds from /proc (Linux; 0 where there is none)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

LIMIT_MB = 2048  # what the local stack may hold through a 10,000-event soak (make reliability)


def rss_mb(pid: int) -> int:
    """A process's resident size in MB; 0 when it has ended or /proc is not there."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(status.split("VmRSS:")[1].split()[0]) // 1024 if "VmRSS:" in status else 0


class MemoryWatch:
    """Samples moto's server (`moto_pid`) and this process until stopped; `peak_mb`, `moto_peak_mb`."""

    def __init__(self, moto_pid: int, every: float = 1.0):
        self.moto_pid, self.every = moto_pid, every
        self.peak_mb = self.moto_peak_mb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    def _sample(self) -> None:
        moto = rss_mb(self.moto_pid)
        self.moto_peak_mb = max(self.moto_peak_mb, moto)
        self.peak_mb = max(self.peak_mb, moto + rss_mb(os.getpid()))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def start(self) -> MemoryWatch:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
