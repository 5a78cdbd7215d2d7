"""transfer.progress: the lines a running transfer job writes, and how often."""

import io
import threading
import time

import pytest

from galaxy_cloud_storage.transfer.progress import (
    ByteMeter,
    human_bytes,
    human_seconds,
    INTERVAL_VARIABLE,
    progress_interval,
    ProgressReport,
)

MiB = 1024 * 1024


def test_a_progress_line_says_objects_bytes_throughput_and_time_left():
    meter = ByteMeter()
    report = ProgressReport(10, 100 * MiB, meter, out=io.StringIO(), interval=60)
    report._last = (time.monotonic() - 2.0, 0)  # two seconds ago, nothing moved
    meter.add(20 * MiB)
    report.object_ended()
    line = report.progress_line()
    assert line.startswith("Progress: 1 of 10 objects, 20.0 MiB of 100.0 MiB (20%), ")
    rate = float(line.split(", ")[2].split()[0])
    assert 9.0 <= rate <= 10.1, line  # about 20 MiB in 2 s
    assert line.endswith(" left") and ("about 8 s" in line or "about 9 s" in line), line


def test_without_a_total_no_percentage_nor_time_left():
    report = ProgressReport(3, None, ByteMeter(), out=io.StringIO(), interval=60)
    line = report.progress_line()
    assert line == "Progress: 0 of 3 objects, 0 bytes, 0 bytes/s"


def test_lines_come_every_interval_while_the_transfer_runs_and_whole_from_any_thread():
    out = io.StringIO()
    meter = ByteMeter()
    with ProgressReport(2, 10 * MiB, meter, out=out, interval=0.05) as report:
        threads = [threading.Thread(target=lambda: [report.line("x" * 200) for _ in range(50)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(10):
            meter.add(MiB)
            time.sleep(0.02)
        for thread in threads:
            thread.join()
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("Progress: ") for line in lines) >= 2
    assert all(line == "x" * 200 or line.startswith("Progress: ") for line in lines)  # none mixed


@pytest.mark.parametrize("setting,interval", [(None, 3.0), ("0.5", 0.5), ("0.01", 0.2), ("60", 5.0), ("soon", 3.0)])
def test_the_interval_is_three_seconds_or_the_jobs_environment_within_bounds(monkeypatch, setting, interval):
    if setting is None:
        monkeypatch.delenv(INTERVAL_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(INTERVAL_VARIABLE, setting)
    assert progress_interval() == interval


def test_human_units():
    assert human_bytes(0) == "0 bytes" and human_bytes(1023) == "1023 bytes"
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(3 * 1024**4) == "3.0 TiB"
    assert human_seconds(59.6) == "60 s" and human_seconds(125) == "2 min 05 s" and human_seconds(7300) == "2 h 01 min"
