"""Resume-safe TensorBoard logs: drop the events a killed run wrote past its checkpoint.

TensorBoard's own remedy (a ``purge_step`` session-start event) only hides the killed run's
late steps when it happens to read the resumed run's file after the killed one, which depends
on file names (timestamp, host, pid). Rewriting the event files before the resumed run logs
makes the result independent of read order: every step appears once.
"""

from __future__ import annotations

import os
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter

EVENT_FILE_GLOB = "events.out.tfevents.*"


def drop_events_from(log_dir: Path, step: int) -> int:
    """Rewrite every event file under ``log_dir`` without its events at ``step`` or later
    (global optimiser steps), each file atomically; the file-version header and other
    step-0 records stay. Returns how many events were dropped."""
    dropped = 0
    for path in sorted(Path(log_dir).rglob(EVENT_FILE_GLOB)):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [record for record in records if not _late(record, step)]
        if len(kept) == len(records):
            continue
        dropped += len(records) - len(kept)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            writer = RecordWriter(handle)
            for record in kept:
                writer.write(record)
            writer.flush()
        os.replace(partial, path)
    return dropped


def _late(record: bytes, step: int) -> bool:
    event = Event.FromString(record)
    return event.step >= step and not event.HasField("file_version")
