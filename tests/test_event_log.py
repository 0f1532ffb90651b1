"""A resumed run's TensorBoard log has each step once, whatever order the event files are read in."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from gridslab.train.event_log import drop_events_from


def _log(log_dir: Path, steps: range, suffix: str) -> None:
    writer = SummaryWriter(str(log_dir), filename_suffix=suffix)
    for step in steps:
        writer.add_scalar("train/loss", float(step), step)
        writer.add_text("note", f"{suffix} {step}", step)
    writer.close()


def _steps(log_dir: Path) -> list[int]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [event.step for event in events.Scalars("train/loss")]


def test_steps_past_the_checkpoint_are_dropped_before_the_resumed_run_logs(tmp_path):
    _log(tmp_path, range(0, 8), ".killed")  # killed after logging step 7, checkpoint at step 5
    assert drop_events_from(tmp_path, 5) == 2 * 3  # steps 5, 6, 7: one scalar and one text each
    _log(tmp_path, range(5, 10), ".resumed")
    assert sorted(_steps(tmp_path)) == list(range(10))
    # read order does not matter: give the resumed file the name that sorts first
    killed, resumed = sorted(tmp_path.glob("*.killed")), sorted(tmp_path.glob("*.resumed"))
    resumed[0].rename(tmp_path / "events.out.tfevents.0000000000.a.resumed")
    assert sorted(_steps(tmp_path)) == list(range(10)) and killed[0].exists()


def test_a_log_with_nothing_past_the_step_is_left_untouched(tmp_path):
    _log(tmp_path, range(0, 4), ".run")
    (path,) = tmp_path.glob("events.*")
    before = path.read_bytes()
    assert drop_events_from(tmp_path, 4) == 0
    assert path.read_bytes() == before
