"""Torch CPU threads of a training process: ``trainer.threads`` resolved, and ``auto``'s tuner.

Why ``auto`` adapts instead of fixing a count: torch's OpenMP threads (libgomp) spin at the
barrier that ends every parallel kernel until all of them arrive. When a neighbour process
takes one of the cores, one thread is descheduled and the others spin through its time slice,
so a step slows down far more than the share of CPU lost. Measured on 2 cores
(``benchmarks/results/train_threads.md``, default experiment): 2 threads 0.159 s/step alone
but 2.07 s beside one busy process; 1 thread 0.263 alone, 0.256 beside it. No fixed count is
best in both cases, so ``auto`` measures: ``ThreadTuner`` starts at the cores this rank may
use and now and then runs a few steps at the next smaller (or larger) count, keeping whichever
is faster.

Thread counts change the order of float sums in the backward pass (gradients differ in the
last bits, ~1e-7; the forward pass is identical), so an ``auto`` run's weights depend on the
load it met; ``trainer.deterministic=true`` or an explicit ``trainer.threads=N`` fixes the count.
Not set here: libgomp's spin (``GOMP_SPINCOUNT`` / ``OMP_WAIT_POLICY`` are read when torch loads
libgomp, before any config; alone on the cores they made steps 25% (spin count 1000) and 47%
(passive) slower, which ``auto`` does not lose) and DataLoader workers (``data.num_workers``; torch runs each worker process with 1 thread).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any

import lightning as L
import torch

from gridslab.config.schema import THREADS_AUTO
from gridslab.errors import UserError


def local_ranks(devices: int) -> int:
    """Training processes on this node: torchrun's ``LOCAL_WORLD_SIZE``, else ``trainer.devices``
    (Lightning starts that many per node)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", devices)))


def cores_per_rank(ranks: int) -> int:
    """The CPU cores this process may use (its affinity mask) shared among ``ranks`` processes, at least 1."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, ranks))


def start_threads(threads: int | str, devices: int) -> int:
    """The thread count a training process starts with: ``auto`` -> ``cores_per_rank``;
    N >= 1 -> N; 0 -> torch's current default."""
    if threads == THREADS_AUTO:
        return cores_per_rank(local_ranks(devices))
    return int(threads) or torch.get_num_threads()


def apply_threads(trainer_cfg: Any) -> int:
    """Set torch's thread count for ``trainer_cfg`` (a ``TrainerConfig`` or node); returns it."""
    threads = start_threads(trainer_cfg.threads, trainer_cfg.devices)
    torch.set_num_threads(threads)
    return threads


def candidate_counts(cores: int) -> list[int]:
    """Thread counts ``auto`` chooses among, ascending: ``cores`` halved down to 1 (2 -> [1, 2], 12 -> [1, 3, 6, 12])."""
    counts = [cores]
    while counts[-1] > 1:
        counts.append(counts[-1] // 2)
    return sorted(set(counts))


class ThreadTuner(L.Callback):
    """Keeps the fastest of ``candidate_counts(cores)`` while training (``trainer.threads=auto``).

    Times each optimiser step (``on_train_batch_start`` to ``_end``: forward, backward,
    optimiser, EMA; not data loading or validation). After ``first_probe`` steps, and then
    every ``interval`` steps, it probes: the neighbouring smaller count runs ``probe_steps``
    steps (then, if that lost, the neighbouring larger one), and the count whose median step
    time beats the current count's last ``probe_steps`` steps by ``margin`` is kept. A probe
    whose first step is ``reject`` times slower than the current count ends at once (a spinning
    probe under load costs one step). After a probe that changed nothing the interval doubles
    (up to ``max_interval``), and is at least what keeps the time lost in losing probes under
    ``budget`` of the training time (a probe step 10x slower than the current count's: 450
    steps); a change, or the current count's steps slowing down by ``reject`` (a neighbour
    arrived), brings the next probe forward to ``interval`` steps from now.
    ``counts`` records (global step, threads) at the start and at each change; the current count
    is logged as ``train/threads``.
    """

    def __init__(
        self,
        cores: int,
        first_probe: int = 5,
        interval: int = 50,
        max_interval: int = 200,
        probe_steps: int = 3,
        margin: float = 0.05,
        reject: float = 2.0,
        budget: float = 0.02,
    ):
        if cores < 1:
            raise UserError(f"ThreadTuner cores={cores} must be >= 1")
        self.choices = candidate_counts(cores)
        self.threads = cores
        self.base_interval, self.max_interval = interval, max_interval
        self.probe_steps, self.margin, self.reject, self.budget = probe_steps, margin, reject, budget
        self.lost = 0.0  # this probe's time beyond the current count's, in current steps
        self.interval = interval
        self.next_probe: float = first_probe
        self.steps = 0
        self.recent: list[float] = []  # the current count's step times (seconds), newest last
        self.settled: float | None = None  # its median right after the last probe
        self.queue: list[int] = []  # counts still to probe in this probe
        self.trial: list[float] = []  # the probed count's step times
        self.started = 0.0
        self.counts: list[tuple[int, int]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.set_num_threads(self.threads)
        self.counts.append((trainer.global_step, self.threads))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        threads = self.observe(time.perf_counter() - self.started, trainer.global_step)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        pl_module.log("train/threads", float(threads), on_step=True, on_epoch=False, batch_size=1)

    def observe(self, seconds: float, global_step: int) -> int:
        """Record one optimiser step of ``seconds`` (run at the count this returned last time) and
        return the thread count for the next step."""
        self.steps += 1
        if self.queue:
            return self._probe_step(seconds, global_step)
        self.recent = (self.recent + [seconds])[-self.probe_steps :]
        if len(self.recent) < self.probe_steps:
            return self.threads
        if self.settled is not None and statistics.median(self.recent) > self.reject * self.settled:
            self.next_probe = min(self.next_probe, self.steps)  # slowed down: a neighbour arrived
        if self.steps < self.next_probe:
            return self.threads
        index = self.choices.index(self.threads)
        self.queue = [self.choices[i] for i in (index - 1, index + 1) if 0 <= i < len(self.choices)]
        if not self.queue:  # one core: nothing to choose
            self.next_probe = math.inf
            return self.threads
        self.trial, self.lost = [], 0.0
        return self.queue[0]

    def _probe_step(self, seconds: float, global_step: int) -> int:
        self.trial.append(seconds)
        current = statistics.median(self.recent)
        if seconds <= self.reject * current and len(self.trial) < self.probe_steps:
            return self.queue[0]
        if statistics.median(self.trial) < (1 - self.margin) * current:
            return self._finish(self.queue[0], statistics.median(self.trial), global_step)
        self.lost += sum(self.trial) / current - len(self.trial)
        self.queue.pop(0)
        self.trial = []
        if self.queue:
            return self.queue[0]
        return self._finish(self.threads, current, global_step)

    def _finish(self, threads: int, median: float, global_step: int) -> int:
        changed = threads != self.threads
        self.interval = self.base_interval if changed else min(2 * self.interval, self.max_interval)
        if not changed:
            self.interval = max(self.interval, math.ceil(self.lost / self.budget))
        self.next_probe = self.steps + self.interval
        self.queue, self.trial = [], []
        if changed:
            self.threads = threads
            self.recent = [median]
            self.counts.append((global_step, threads))
        self.settled = median
        return self.threads
