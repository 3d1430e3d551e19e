"""What every baseline shares: the stop rule, the clock, the training-curve log, the outcome.

The stop rule is SLUG's search criterion, judged by the same ``TrialScorer`` on the same *search*
data: forget top-k on the forget-search split <= target. Time-to-forget is the wall time from the
method's start to the first check that passes, checks included (SLUG's trials count in its time too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class CurveLog(Protocol):
    """The subset of ``dvclive.Live`` the baselines use (tests pass a list-backed stand-in)."""

    def log_metric(self, name: str, val: float) -> None: ...

    def next_step(self) -> None: ...


class NullLog:
    def log_metric(self, name: str, val: float) -> None:
        pass

    def next_step(self) -> None:
        pass


@dataclass
class Check:
    step: int
    epoch: float
    elapsed_s: float
    forget: float
    retain: float
    passed: bool


@dataclass
class Outcome:
    """What a method did: its checks, whether and when it reached the target."""
    checks: list[Check] = field(default_factory=list)
    reached: bool = False
    time_to_forget_s: float | None = None
    time_s: float = 0.0
    steps: int = 0
    epochs: float = 0.0
    extra: dict = field(default_factory=dict)


class StopRule:
    """Scores the model as it is now on the search data; records and logs every check."""

    def __init__(self, scorer, target: float, log: CurveLog | None = None):
        self.scorer, self.target = scorer, target
        self.log = log or NullLog()
        self.outcome = Outcome()
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, step: int, epoch: float, **curves: float) -> bool:
        forget, retain, _ = self.scorer.score()
        now = self.elapsed()
        passed = forget <= self.target
        self.outcome.checks.append(Check(step, epoch, now, forget, retain, passed))
        for k, v in {"search/forget": forget, "search/retain": retain, "epoch": epoch,
                     "elapsed_s": now, **curves}.items():
            self.log.log_metric(k, float(v))
        self.log.next_step()
        if passed and not self.outcome.reached:
            self.outcome.reached, self.outcome.time_to_forget_s = True, now
        self.outcome.steps, self.outcome.epochs = step, epoch
        return passed

    def finish(self) -> Outcome:
        self.outcome.time_s = self.elapsed()
        return self.outcome
