"""The run listing's summary cache, and the Monitor's and Runs screen's polling seams (behaviour, not timing:
benchmarks/runs_listing.py prints the speed)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import screen_of, stand_in_worker, wait_until
from runs_fixtures import write_run

from lorastudio.train.launch import runs
from lorastudio.train.run.eventlog import EVENTS_FILE
from lorastudio.train.run.events import MetricsEvent, StatusEvent
from lorastudio.train.run.summaries import CACHE_FILE, SummaryCache, summary_cache

T0 = 1_790_000_000.0


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = tmp_path / "data" / "studio" / "runs"
    write_run(root, "a-done", created=T0, steps=6)
    write_run(root, "b-stopped", created=T0 + 60, steps=10, stop_at=3, final="stopped")
    return root


def live_run(root: Path, name: str = "c-live") -> Path:
    """A run whose worker is alive (a stand-in), at step 2 of 5 and still training."""
    run = write_run(root, name, created=T0 + 120, steps=5)
    lines = (run / EVENTS_FILE).read_text().splitlines()
    metrics = [i for i, line in enumerate(lines) if '"metrics"' in line]
    (run / EVENTS_FILE).write_text("\n".join(lines[: metrics[1] + 1]) + "\n")  # up to step 2, no final status
    stand_in_worker(run)
    return run


def append(run: Path, **event: object) -> None:
    with (run / EVENTS_FILE).open("a") as handle:
        handle.write(json.dumps({"v": 1, "t": T0 + 500, **event}) + "\n")


def by_name(root: Path) -> dict[str, runs.RunSummary]:
    return {r.name: r for r in runs.list_runs(root)}


def test_unchanged_runs_are_not_read_again_and_a_fresh_process_uses_the_saved_cache(home: Path) -> None:
    first = by_name(home)
    cache = summary_cache()
    assert first["a-done"].status == "done" and first["b-stopped"].step == 3
    assert (cache.path.parent / CACHE_FILE).exists()
    reads = cache.reads
    assert by_name(home) == first
    assert cache.reads == reads  # nothing opened: size and mtime unchanged
    fresh = SummaryCache(cache.path)  # another process: loads the index from disk
    assert fresh.state(home / "a-done").scalars_json() == cache.state(home / "a-done").scalars_json()
    assert fresh.reads == 0


def test_a_live_run_grows_and_only_the_new_bytes_are_folded(home: Path) -> None:
    run = live_run(home)
    assert by_name(home)["c-live"].status == "training" and by_name(home)["c-live"].step == 2
    cache = summary_cache()
    size, folded = (run / EVENTS_FILE).stat().st_size, cache.folded_bytes
    append(run, kind="metrics", step=3, max_steps=5, loss=0.25)
    summary = by_name(home)["c-live"]
    assert (summary.step, summary.last_loss, summary.status) == (3, 0.25, "training")
    assert cache.folded_bytes - folded == (run / EVENTS_FILE).stat().st_size - size  # from the cached offset
    append(run, kind="status", status="done")
    assert by_name(home)["c-live"].status == "done"


def test_a_rewritten_file_is_folded_again(home: Path) -> None:
    by_name(home)
    events = home / "a-done" / EVENTS_FILE
    lines = events.read_text().splitlines()
    # same contents with the final status replaced and one more line: longer, but not an append
    lines[-1] = json.dumps({"v": 1, "t": T0 + 99, "kind": "status", "status": "failed", "cause": "rewritten"})
    events.write_text("\n".join(lines) + "\n" + json.dumps({"v": 1, "t": T0 + 100, "kind": "log"}) + "\n")
    summary = by_name(home)["a-done"]
    assert (summary.status, summary.cause) == ("failed", "rewritten")


@pytest.mark.parametrize("damage", ["entry", "file", "offset", "fingerprint"])
def test_a_corrupt_cache_is_ignored(home: Path, damage: str) -> None:
    truth = by_name(home)
    cache = summary_cache()
    path = cache.path
    data = json.loads(path.read_text())
    key = str((home / "a-done").absolute())
    if damage == "entry":
        data["runs"][key]["state"] = {**data["runs"][key]["state"], "step": "lots", "status": 7}
    elif damage == "offset":
        data["runs"][key]["offset"] = 10**9
    elif damage == "fingerprint":  # the file looks grown, and the recorded bytes are not the file's
        data["runs"][key].update(size=1, fingerprint="00", state={**data["runs"][key]["state"], "step": 99})
    path.write_text("{not json" if damage == "file" else json.dumps(data))
    fresh = SummaryCache(path)
    state = fresh.state(home / "a-done")
    assert (state.status, state.step, state.last_loss) == ("done", 6, truth["a-done"].last_loss)


# -- the screens' polling ---------------------------------------------------------------------------
def count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every open of an events file, from any thread (the count works whatever reads it)."""
    opened: list[str] = []
    real = Path.open

    def counting(self: Path, *args, **kwargs):
        if self.name == EVENTS_FILE:
            opened.append(self.parent.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting)
    return opened


async def test_runs_screen_does_not_reread_unchanged_runs_and_shows_a_live_event(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.app import StudioApp
    from lorastudio.screens.runs import REFRESH_S, RunsScreen

    run = live_run(home)
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(RunsScreen())
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_until(pilot, lambda: screen.loaded)
        opened = count_opens(monkeypatch)
        await pilot.pause(REFRESH_S * 4)  # several ticks
        assert opened == []  # nothing changed: no events file opened
        append(run, kind="metrics", step=4, max_steps=5, loss=0.125)
        await wait_until(
            pilot, lambda: any(r.name == "c-live" and r.step == 4 for r in screen.runs), timeout=20
        )
        assert set(opened) == {"c-live"}  # only the run that grew


async def test_monitor_skips_a_tick_while_a_read_runs(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that outlasts the polling interval must not be joined by a second one folding into the same state."""
    from lorastudio.app import StudioApp
    from lorastudio.screens.monitor import REFRESH_S, MonitorScreen
    from lorastudio.train.run.eventlog import EventTail

    run = live_run(home)
    release = threading.Event()
    inside, most, calls = [0], [0], [0]
    lock = threading.Lock()

    def slow(real):
        def read(self, *args, **kwargs):
            with lock:
                inside[0] += 1
                calls[0] += 1
                most[0] = max(most[0], inside[0])
            try:
                if calls[0] > 1:  # the first read (on mount) is quick; later ones stall until released
                    release.wait(20)
                return real(self, *args, **kwargs)
            finally:
                with lock:
                    inside[0] -= 1

        return read

    for name in ("read_new", "read_events"):  # whichever the screen reads through
        if hasattr(EventTail, name):
            monkeypatch.setattr(EventTail, name, slow(getattr(EventTail, name)))
    app = StudioApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(MonitorScreen(run))
        screen = screen_of(app, MonitorScreen)
        await wait_until(pilot, lambda: screen.snapshot is not None)
        await wait_until(pilot, lambda: calls[0] >= 2)  # a read is stalled now
        await pilot.pause(REFRESH_S * 5)  # ticks that come while it is stalled
        stalled_calls = calls[0]
        release.set()
        append(run, kind="metrics", step=3, max_steps=5, loss=0.5)
        await wait_until(
            pilot, lambda: screen.snapshot is not None and screen.snapshot.state.step == 3, timeout=20
        )
    assert stalled_calls == 2 and most[0] == 1


def test_a_deleted_run_leaves_the_cache(home: Path) -> None:
    import shutil

    by_name(home)
    shutil.rmtree(home / "b-stopped")
    assert set(by_name(home)) == {"a-done"}
    cache = summary_cache()
    assert (
        len(json.loads(cache.path.read_text())["runs"]) == 2
    )  # saves are spaced: a live run changes every tick
    cache.save(force=True)
    saved = json.loads(cache.path.read_text())["runs"]
    assert list(saved) == [str((home / "a-done").absolute())]


# -- the writer's own summary (summary.json) ---------------------------------------------------------
def written_run(root: Path, name: str, steps: int) -> Path:
    """A run whose events went through the SummarizingWriter, as the worker writes them."""
    from lorastudio.train.run.summaries import SummarizingWriter

    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": 1, "name": name, "recipe": "r", "created": T0}))
    writer = SummarizingWriter(run / EVENTS_FILE)
    writer.emit(StatusEvent(status="queued"))
    writer.emit(StatusEvent(status="training", max_steps=steps))
    for step in range(1, steps + 1):
        writer.emit(MetricsEvent(step=step, max_steps=steps, loss=1.0 / step))
    writer.emit(StatusEvent(status="done", step=steps, adapter="adapter"))
    writer.close()
    return run


def full_fold(run: Path) -> dict[str, object]:
    from lorastudio.train.run.runstate import RunReader, RunState

    reader = RunReader(run, RunState(curves=False))
    reader.update()
    return reader.state.scalars_json()


def test_a_first_listing_reads_the_writers_summary_instead_of_every_event(home: Path) -> None:
    from lorastudio.train.run.summaries import RUN_SUMMARY_FILE

    run = written_run(home, "d-written", steps=40)
    entry = json.loads((run / RUN_SUMMARY_FILE).read_text())
    assert entry["offset"] == (run / EVENTS_FILE).stat().st_size and entry["state"] == full_fold(run)
    cache = SummaryCache(home.parent / "fresh-cache.json")  # a new machine: nothing cached
    state = cache.state(run)
    assert (state.status, state.step, state.last_loss) == ("done", 40, 1.0 / 40)
    assert cache.folded_bytes == 0  # not one event folded: the fingerprint check and an empty tail


def test_events_appended_after_the_summary_are_folded_from_its_offset(home: Path) -> None:
    run = written_run(home, "d-written", steps=12)
    size = (run / EVENTS_FILE).stat().st_size
    append(run, kind="log", message="a line from another writer")  # e.g. the supervisor, after the worker
    append(run, kind="status", status="failed", cause="the node went away")
    cache = SummaryCache(home.parent / "fresh-cache.json")
    state = cache.state(run)
    assert (state.status, state.cause, state.step) == ("failed", "the node went away", 12)
    assert cache.folded_bytes == (run / EVENTS_FILE).stat().st_size - size
    assert state.scalars_json() == full_fold(run)


@pytest.mark.parametrize("damage", ["foreign", "version", "not json"])
def test_a_summary_that_does_not_match_its_events_is_ignored(home: Path, damage: str) -> None:
    from lorastudio.train.run.summaries import RUN_SUMMARY_FILE

    run = written_run(home, "d-written", steps=8)
    other = written_run(home, "e-other", steps=30)
    target = run / RUN_SUMMARY_FILE
    # "foreign": another run's summary copied over, whose offset and fingerprint are not this file's
    if damage == "foreign":
        target.write_text((other / RUN_SUMMARY_FILE).read_text())
    elif damage == "version":
        target.write_text(json.dumps({**json.loads(target.read_text()), "version": [0, 0]}))
    else:
        target.write_text('{"offset": 3, "state"')
    cache = SummaryCache(home.parent / "fresh-cache.json")
    state = cache.state(run)
    assert (state.status, state.step) == ("done", 8) and state.scalars_json() == full_fold(run)
    assert cache.folded_bytes == (run / EVENTS_FILE).stat().st_size  # the whole file, once


def test_a_resumed_writer_folds_on_from_the_summary_and_a_failing_summary_never_fails_the_run(
    home: Path,
) -> None:
    from lorastudio.train.run.summaries import RUN_SUMMARY_FILE, SummarizingWriter

    run = written_run(home, "d-written", steps=5)
    writer = SummarizingWriter(run / EVENTS_FILE)  # `studio resume`: a new writer on the same file
    writer.emit(StatusEvent(status="training", max_steps=9))
    writer.emit(MetricsEvent(step=9, max_steps=9, loss=0.01))
    writer.emit(StatusEvent(status="done", step=9, adapter="adapter"))
    writer.close()
    assert json.loads((run / RUN_SUMMARY_FILE).read_text())["state"] == full_fold(run)
    (run / RUN_SUMMARY_FILE).unlink()
    (run / RUN_SUMMARY_FILE).mkdir()  # cannot be replaced by a file: writing it fails every time
    writer = SummarizingWriter(run / EVENTS_FILE)
    writer.emit(StatusEvent(status="stopped", cause="by hand"))
    writer.close()
    assert runs.summarise(run, SummaryCache(home.parent / "fresh-cache.json")).status == "stopped"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # no partial file left behind
