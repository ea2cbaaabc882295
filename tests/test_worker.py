"""The training worker on the tiny model, end to end, and the run-directory contract."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, run_worker, state_of, wait_for

from lorastudio import registry
from lorastudio.demo import tinydata
from lorastudio.errors import RunError
from lorastudio.train.launch import runs
from lorastudio.train.run.eventlog import EVENTS_FILE, EventTail, read_all
from lorastudio.train.trainer.backend import (
    Hardware,
    choose_backend,
    resolve_gradient_checkpointing,
    resolve_precision,
)


def test_events_are_versioned_and_tell_the_whole_story(trained_run: Path) -> None:
    lines = (trained_run / EVENTS_FILE).read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert all(e["v"] == 1 and "t" in e and "kind" in e for e in events)
    statuses = [e["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "starting", "loading model", "loading data", "training", "saving", "done"]
    metrics = [e for e in events if e["kind"] == "metrics"]
    recipe = registry.load("tiny-pirate")
    assert recipe.train.max_steps is not None
    assert [m["step"] for m in metrics] == list(range(1, recipe.train.max_steps + 1))
    assert all(m["tokens_per_s"] and m["tokens_seen"] > 0 and m["eta_s"] is not None for m in metrics[1:])
    assert all(m["learning_rate"] is not None and m["grad_norm"] is not None for m in metrics)
    assert_summary_is_the_fold(trained_run)


def assert_summary_is_the_fold(run_dir: Path) -> None:
    """The worker left summary.json: the fold of every event, to the end of the file."""
    from lorastudio.train.run.runstate import RunReader, RunState
    from lorastudio.train.run.summaries import RUN_SUMMARY_FILE

    summary = json.loads((run_dir / RUN_SUMMARY_FILE).read_text())
    reader = RunReader(run_dir, RunState(curves=False))
    reader.update()
    assert summary["offset"] == (run_dir / EVENTS_FILE).stat().st_size
    assert summary["state"] == reader.state.scalars_json() and summary["state"]["status"] == "done"


def test_loss_falls(trained_run: Path) -> None:
    losses = [loss for _, loss in state_of(trained_run).loss]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:5]) / 5


def test_adapter_saved_and_loadable_with_peft(trained_run: Path, tiny_model: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = trained_run / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "recipe.yaml").exists()
    assert (adapter / "tokenizer_config.json").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert sorted(p.name for p in (trained_run / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-40",
        "checkpoint-60",
        "checkpoint-80",
    ]  # train.save_total_limit: the newest 3


def test_demo_proves_itself(trained_run: Path) -> None:
    """Tuned: demo style in >= 80% of held-out answers; base: <= 5% (greedy)."""
    from lorastudio.chat.engine import Sampling, engine_for

    engine = engine_for(str(trained_run))
    engine.load()
    greedy = Sampling(greedy=True, max_new_tokens=30)
    questions = tinydata.held_out_questions()
    tuned = [
        engine.generate([{"role": "user", "content": q}], greedy, use_adapter=True).text for q in questions
    ]
    base = [
        engine.generate([{"role": "user", "content": q}], greedy, use_adapter=False).text for q in questions
    ]
    tuned_rate = sum(bool(tinydata.PIRATE_RE.search(t)) for t in tuned) / len(questions)
    base_rate = sum(bool(tinydata.PIRATE_RE.search(t)) for t in base) / len(questions)
    assert tuned_rate >= 0.8, tuned
    assert base_rate <= 0.05, base


def _small_run(*overrides: str) -> Path:
    return runs.create_run(registry.load("tiny-pirate", list(overrides)))


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tiny_model: Path) -> None:
    import shutil

    run_dir = _small_run("train.max_steps=6", "train.save_steps=2")
    assert run_worker(run_dir).returncode == 0
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-6")
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-4")
    before = len(read_all(run_dir / EVENTS_FILE))
    assert run_worker(run_dir, "--resume").returncode == 0
    after = read_all(run_dir / EVENTS_FILE)[before:]
    steps = [e["step"] for e in after if e["kind"] == "metrics"]
    assert steps == [3, 4, 5, 6]
    assert any(e.get("message") == "resuming from checkpoint-2" for e in after)
    assert after[-1]["status"] == "done"
    assert_summary_is_the_fold(run_dir)  # the resumed writer folded on from the first launch's summary


def _start(run_dir: Path) -> int:
    return runs.start_worker(run_dir)


@pytest.mark.slow
def test_sigterm_saves_and_stops(tiny_model: Path) -> None:
    run_dir = _small_run("train.max_steps=100000", "train.save_steps=100000")
    pid = _start(run_dir)
    wait_for(lambda: state_of(run_dir).step >= 3)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: state_of(run_dir).finished, timeout=60)
    state = state_of(run_dir)
    assert state.status == "stopped" and "SIGTERM" in (state.cause or "")
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert state.step < 100000


@pytest.mark.slow
def test_a_loss_that_is_no_longer_a_number_fails_the_run_naming_the_step(tiny_model: Path) -> None:
    """A learning rate far too high makes the weights NaN. Transformers' own log hides such a step (it logs the
    window's mean of the finite losses), so the run went on and ended `done` with a NaN adapter: it now fails at
    the first non-finite loss, naming the step and the field to change, and saves no adapter."""
    run_dir = _small_run("train.max_steps=30", "train.learning_rate=1e8", "train.save_steps=100000")
    result = run_worker(run_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    state = state_of(run_dir)
    assert state.status == "failed"
    assert re.fullmatch(
        r"the training loss is (nan|inf|-inf) at step \d+: the weights are no longer numbers, so nothing more "
        r"is learnt and no adapter is saved \(lower train\.learning_rate or raise train\.warmup_steps\)",
        state.cause or "",
    ), state.cause
    assert not (run_dir / "adapter").exists()


@pytest.mark.slow
def test_kill_9_shows_died(tiny_model: Path) -> None:
    run_dir = _small_run("train.max_steps=100000", "train.save_steps=100000")
    pid = _start(run_dir)
    wait_for(lambda: state_of(run_dir).step >= 1)
    os.kill(pid, signal.SIGKILL)
    summary = wait_for(lambda: (s := runs.summarise(run_dir)).status == "died" and s, timeout=30)
    assert "without a final status" in summary.cause


@pytest.mark.slow
def test_train_command_survives_sighup(tiny_model: Path) -> None:
    """The terminal going away (SIGHUP to `studio train`) leaves the worker running to done."""
    proc = subprocess.Popen(
        [STUDIO_BIN, "train", "tiny-pirate", "train.max_steps=40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    run_dir = Path(first.split("run: ", 1)[1].strip())
    wait_for(lambda: state_of(run_dir).status in ("loading data", "training", "done"))
    os.killpg(proc.pid, signal.SIGHUP)
    proc.wait(timeout=10)
    final = wait_for(
        lambda: runs.summarise(run_dir).status in ("done", "failed", "died") and runs.summarise(run_dir)
    )
    assert final.status == "done" and final.step == 40


@pytest.mark.slow  # a worker process loads the model before it reaches the bad row
def test_bad_row_mid_data_fails_with_its_line(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "pirate.jsonl"
    good = [json.dumps(r) for r in tinydata.pirate_rows()[:40]]
    data.write_text("\n".join(good[:20] + ['{"instruction": "broken', *good[20:]]) + "\n")
    run_dir = _small_run(f"data.source={data}", "train.max_steps=3")
    result = run_worker(run_dir)
    assert result.returncode == 1
    state = state_of(run_dir)
    assert state.status == "failed" and f"{data}: line 21 is not valid JSON" in state.cause


def test_cli_train_refuses_an_invalid_recipe() -> None:
    out = subprocess.run(
        [STUDIO_BIN, "train", "tiny-pirate", "train.batch_size=zero"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "train.batch_size" in out.stderr and "Traceback" not in out.stderr


def test_unwritable_run_root_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match="cannot create a run directory"):
        runs.create_run(registry.load("tiny-pirate"), root=blocker / "runs")


def test_event_tail_is_incremental_and_tolerates_half_lines(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    path.write_text('{"v": 1, "t": 1, "kind": "status", "status": "training"}\n{"v": 1, "kind": "metr')
    tail = EventTail(path)
    assert [e["status"] for e in tail.read_new()] == ["training"]
    with path.open("a") as handle:
        handle.write('ics", "step": 1, "loss": 2.0}\n')
    assert tail.read_new() == [{"v": 1, "kind": "metrics", "step": 1, "loss": 2.0}]
    assert tail.read_new() == []


def test_nvml_absent_is_a_normal_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from lorastudio.train.trainer import telemetry

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    nvml = telemetry.Nvml()
    assert not nvml.available and nvml.sample() == []
    event = telemetry.telemetry_event(nvml)
    assert event.gpus == () and event.gpu_note and event.rss_mb is not None and event.rss_mb > 0


def test_nvml_without_gpu_says_so() -> None:
    from lorastudio.train.trainer.telemetry import Nvml

    nvml = Nvml()
    if not nvml.available:
        assert "no NVIDIA GPU found" in nvml.reason or "not installed" in nvml.reason


def test_backend_selection_logic() -> None:
    gpu, old_gpu, cpu = (
        Hardware(True, True, "H100"),
        Hardware(True, False, "T4"),
        Hardware(False, False, "cpu"),
    )
    assert choose_backend(gpu, unsloth_importable=True, env={}) == "unsloth"
    assert choose_backend(gpu, unsloth_importable=False, env={}) == "hf"
    assert choose_backend(cpu, unsloth_importable=True, env={}) == "hf"
    assert choose_backend(gpu, unsloth_importable=True, env={"STUDIO_BACKEND": "hf"}) == "hf"
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        choose_backend(cpu, unsloth_importable=True, env={"STUDIO_BACKEND": "unsloth"})
    recipe = registry.load("tiny-pirate", ["train.precision=auto"])
    assert resolve_precision(recipe, gpu) == "bf16"
    assert resolve_precision(recipe, old_gpu) == "fp16"
    assert resolve_precision(recipe, cpu) == "fp32"
    assert resolve_precision(registry.load("tiny-pirate", ["train.precision=bf16"]), old_gpu) == "fp16"
    assert resolve_gradient_checkpointing(recipe, gpu) and not resolve_gradient_checkpointing(recipe, cpu)


def test_runs_cli_lists_the_run(trained_run: Path) -> None:
    out = subprocess.run([STUDIO_BIN, "runs", "--json"], capture_output=True, text=True, check=True)
    listed = {r["name"]: r for r in json.loads(out.stdout)}
    entry = listed[trained_run.name]
    assert entry["status"] == "done" and entry["recipe"] == "tiny-pirate" and entry["step"] == 80


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            "CUDA out of memory. Tried to allocate 31.31 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
            "12.50 GiB is free. Including non-PyTorch memory, this process has 66.68 GiB memory in use.",
            "CUDA out of memory: asked 31.31 GiB, 12.50 GiB free of 79.19 GiB",
        ),
        ("CUDA out of memory. Tried to allocate 2.00 GiB", "CUDA out of memory: asked 2.00 GiB"),
        ("out of memory", "CUDA out of memory"),
    ],
)
def test_oom_cause_names_the_numbers(message: str, cause: str) -> None:
    """The failed run's cause carries torch's figures (asked, free, total) where its message has them."""
    from lorastudio.train.trainer.backend import oom_cause

    assert oom_cause(message) == cause


def test_out_of_memory_is_reported_with_the_fields_to_change(tiny_model: Path, monkeypatch) -> None:
    """CUDA OOM ends the run as failed, named as such, with the recipe fields that lower memory."""
    from lorastudio.train.trainer import trainrun as worker
    from lorastudio.train.trainer import trlneeds

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(worker, "build_trainer", boom)
    monkeypatch.setattr(trlneeds, "sft_blocker", lambda: None)  # no trainer is built: any TRL will do
    run_dir = _small_run("train.max_steps=2")
    assert worker.run(run_dir) == 1
    state = state_of(run_dir)
    assert state.status == "failed" and state.cause == "CUDA out of memory: asked 2.00 GiB"
    assert any(h.startswith("train.batch_size") for h in state.hints)
    assert any(h.startswith("model.load_in_4bit") for h in state.hints)
    assert "Tried to allocate" in state.traceback


STOP_FLAG_SCRIPT = """
import sys
from lorastudio.train.trainer.trainrun import StopFlag, StopNow
flag = StopFlag()
flag.install()
flag.saving = sys.argv[1] == "saving"
print("ready", flush=True)
try:
    while True:  # stuck in Python code the trainer never leaves: the flag alone ends nothing
        pass
except StopNow as exc:
    print(f"stop now: {exc}, flag {flag.event.is_set()}", flush=True)
"""


@pytest.mark.parametrize("phase", ["training", "saving"])
def test_a_second_stop_ends_the_run_at_once_unless_it_is_saving(phase: str) -> None:
    """The first SIGTERM sets the flag (a clean stop at the step's end); a second raises StopNow wherever the main
    thread is, except while the adapter is written, which a second stop must not cut in half."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STOP_FLAG_SCRIPT, phase], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1)  # the flag is set, nothing else
        proc.send_signal(signal.SIGTERM)
        if phase == "training":
            assert proc.wait(30) == 0
            assert proc.stdout.read().strip() == "stop now: SIGTERM, flag True"
        else:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(1)
    finally:
        proc.kill()
        proc.wait()
