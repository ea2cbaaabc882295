"""The whole flow in a real terminal: the real `studio` command inside tmux, and a dropped connection."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import STUDIO_BIN

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, env: dict[str, str], size: tuple[int, int] = (120, 40)) -> None:
        self.session = f"studio-e2e-{uuid.uuid4().hex[:8]}"
        # A private server per terminal: after kill-session the old server exits asynchronously, and a
        # new-session on the shared default socket can reach it mid-exit ("server exited unexpectedly").
        self.socket = self.session
        self.env = env
        self.size = size

    def tmux(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], text=True, **kwargs)  # type: ignore[call-overload]

    def start(self, command: str) -> None:
        exports = " ".join(f"{k}={v}" for k, v in self.env.items())
        self.tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            str(self.size[0]),
            "-y",
            str(self.size[1]),
            f"env {exports} TERM=xterm-256color {command}",
            check=True,
        )

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys, check=True)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session, capture_output=True).stdout

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{text!r} never appeared; screen was:\n{self.screen()}")

    def kill(self) -> None:
        self.tmux("kill-server", capture_output=True)


def test_whole_flow_with_a_dropped_connection(tiny_model: Path, tmp_path: Path) -> None:
    env = {k: os.environ[k] for k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "PATH")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # a fresh state directory
    env["STUDIO_BACKEND"] = "hf"
    first = Tmux(env)
    try:
        # 1. the picker shows the recipes; filter to tiny-pirate and open it
        first.start(STUDIO_BIN)
        first.wait_for("llama3.2-1b-pirate", timeout=30)
        first.keys(
            "/tiny-pirate", "Enter"
        )  # one burst, as a paste or a slow link delivers it: the `t` is text
        # 2. the preview shows a sample with trained and masked tokens; next sample
        screen = first.wait_for("sample 1/225")
        assert "⟦Arr, the pearl be white, matey!" in screen
        runs_root = tmp_path / "data" / "studio" / "runs"
        assert not runs_root.exists() or not any(runs_root.iterdir()), "the burst started a run"
        first.keys("n")
        first.wait_for("sample 2/225")
        # 3. `t` opens the Launch sheet (nothing starts); Enter there starts exactly one run
        first.keys("t")
        first.wait_for("Launch · tiny-pirate")
        first.wait_for("est. host RAM")
        assert not runs_root.exists() or not any(runs_root.iterdir())
        first.keys("Enter")
        first.wait_for("Monitor")
        first.wait_for("last loss", timeout=120)  # the step counter and loss are on screen
    finally:
        # 4. the terminal is gone, as when SSH drops
        first.kill()
    assert len(list(runs_root.iterdir())) == 1
    run_dir = next(runs_root.iterdir())
    second = Tmux(env)
    try:
        # 5. studio again: the runs list shows the run; attach; the Monitor shows the history and done
        second.start(STUDIO_BIN)
        second.wait_for("tiny-pirate", timeout=30)
        second.keys("C-r")
        screen = second.wait_for(run_dir.name[:20])
        assert "training" in screen or "done" in screen
        second.keys("Enter")
        screen = second.wait_for("status: done", timeout=180)
        assert "step 80/80" in screen
        # 6. chat on that run: a held-out question in the tuned style, then the base model
        second.keys("c")
        second.wait_for("tuned (adapter on)", timeout=90)
        second.keys("What colour is the sky?")
        second.keys("Enter")
        screen = second.wait_for("tok/s", timeout=60)
        assert "Arr" in screen
        second.keys("C-t")
        second.wait_for("Chat · tiny-pirate · base")
        second.keys("C-n")  # a fresh conversation, so the base reply is the only one on screen
        second.wait_for("new conversation")
        second.keys("What colour is the sky?")
        second.keys("Enter")
        screen = second.wait_for("tok/s", timeout=60)
        assert "The sky is blue." in screen
        assert "Arr" not in screen
    finally:
        second.kill()


def test_keys_typed_while_studio_starts_are_kept_in_order(tiny_model: Path, tmp_path: Path) -> None:
    """`studio`, then `/tiny-pirate` Enter typed at once, before the first paint: the keys wait for the picker
    and act there in order (they once reached a hidden filter box as text, `/` included, or were lost)."""
    env = {k: os.environ[k] for k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "PATH")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    term = Tmux(env)
    try:
        term.start(STUDIO_BIN)
        term.keys("/tiny-pirate", "Enter")  # at once: studio is still importing
        screen = term.wait_for("sample 1/225")
        assert "Preview" in screen
        assert "tiny-pirate" in screen
    finally:
        term.kill()


def test_the_issue_38_tour_at_80x24(tiny_model: Path, tmp_path: Path) -> None:
    """Issue 38's tour in a real terminal, for what needs no trained model: `/tiny-var3` Enter Enter in one
    burst opens one Preview that prepares its data once (two stacked Previews raced on the cache: error toasts,
    an empty stats pane, a second Preview under Esc); Compare of two runs lists both differences at 80x24; the
    palette names studio's commands; a recipe added while studio runs is listed at once."""
    from runs_fixtures import write_runs

    config, cache = tmp_path / "config", tmp_path / "cache"
    recipes = config / "studio" / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "tiny-var3.yaml").write_text(
        "extends: tiny-pirate\nname: tiny-var3\nmodel:\n  max_seq_length: 100\n"
    )
    (cache / "studio").mkdir(parents=True)
    (cache / "studio" / "tiny-base").symlink_to(tiny_model, target_is_directory=True)  # an empty data cache
    write_runs(tmp_path / "data" / "studio" / "runs")
    env = {
        "XDG_CONFIG_HOME": str(config),
        "XDG_CACHE_HOME": str(cache),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    env |= {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "PATH")}
    term = Tmux(env, size=(80, 24))
    try:
        term.start(STUDIO_BIN)
        term.wait_for("tiny-var3", timeout=60)
        term.keys("/tiny-var3", "Enter", "Enter")  # one burst
        term.wait_for("Preview · tiny-var3", timeout=120)
        screen = term.wait_for("used      225", timeout=120)  # the stats pane is filled
        assert "truncated 0" in screen, screen
        assert "Error" not in screen, screen
        time.sleep(1.0)  # a second Preview's failure would toast by now
        assert "Error" not in term.screen()
        prepared = cache / "studio" / "prepared"
        assert [p.name for p in prepared.iterdir() if p.name.endswith(".tmp")] == []
        term.keys("Escape")  # back to the picker, not to a second Preview
        screen = term.wait_for("/ Filter")
        assert "Preview ·" not in screen, screen
        term.keys("Escape")  # the filter box: cleared
        term.wait_for("smollm2-pirate")
        (recipes / "tiny-var4.yaml").write_text("extends: tiny-pirate\nname: tiny-var4\n")
        term.wait_for("tiny-var4", timeout=30)
        term.keys("C-p")
        term.wait_for("Recipes: Preview")  # studio's own commands, by name
        term.keys("Escape")
        # the palette gone before the next key: ESC and a key right behind it read as Alt+key in a terminal
        deadline = time.monotonic() + 30
        while "Search for commands" in term.screen() and time.monotonic() < deadline:
            time.sleep(0.25)
        term.keys("C-r")
        term.wait_for("D Delete")  # the Runs footer, whole at 80 columns
        term.keys("Down", "Space", "Space", "v")  # the two tiny-pirate runs: learning rate and batch differ
        screen = term.wait_for("recipe fields that differ (2)", timeout=60)
        assert "train.batch_size" in screen, screen
        assert "train.learning_rate" in screen, screen
    finally:
        term.kill()
