"""Wall time and peak memory of a piece of work, for the cost columns of a comparison.

On CUDA the peak is ``torch.cuda.max_memory_allocated`` over the block. On the CPU it is the peak
resident set size sampled every few milliseconds by a thread, minus the size at the start: memory
the block added, not what the process already held (and a lower bound if a spike falls between
two samples). Before a CPU measurement, freed heap memory is handed back to the OS
(``malloc_trim``), so a block does not look free because an earlier block left room in the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time

import psutil
import torch


class Meter:
    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval_s
        self.time_s = 0.0
        self.peak_bytes = 0

    def __enter__(self) -> "Meter":
        self._t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _trim_heap()
        self._proc = psutil.Process()
        self._base = self._peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self.peak_bytes = self._peak - self._base
        self.time_s = time.perf_counter() - self._t0


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the peak may then be under-reported
        pass
