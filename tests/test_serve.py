"""``studio serve``: a real engine behind an OpenAI-compatible endpoint, detached, listed and stopped.

The slow tests talk to transformers' own server with the official ``openai`` client, on the tiny base and on the
trained tiny-pirate run (merged into the server's directory). The bad-input tests need no model: each is refused
with one message, with no server directory made and nothing left running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUESTION, STUDIO_BIN

from lorastudio import cli
from lorastudio.serve.servedir import SERVE_FILE, ServeInfo, read_info, serves_dir, write_info


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def studio(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([STUDIO_BIN, *args], capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout, proc.stderr


def server_dirs() -> list[str]:
    root = serves_dir()
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def listed() -> dict[str, dict]:
    code, out, err = studio("serve", "list", "--json")
    assert code == 0, err
    return {row["id"]: row for row in map(json.loads, out.splitlines())}


# -- bad input: one message, no directory, nothing running ------------------------------------------------


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """A folder that reads as a model (its config is never loaded: every case is refused before)."""
    folder = tmp_path / "some-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    path = tmp_path / "model-q8_0.gguf"
    path.write_bytes(b"GGUF")
    return path


def bad(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    before = server_dirs()
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert server_dirs() == before, "a refused serve left a directory"
    return err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--engine", "vllm"], "vLLM is not installed: pip install vllm"),
        (["--engine", "llamacpp"], "--engine llamacpp serves a GGUF file"),
        (["--host", "0.0.0.0", "--api-key-env", "STUDIO_TEST_UNSET_KEY"], "STUDIO_TEST_UNSET_KEY is not set"),
        (["--port", "70000"], "--port 70000: choose a port from 1 to 65535"),
    ],
)
def test_model_folder_refused(
    model_folder: Path, extra: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ.pop("STUDIO_TEST_UNSET_KEY", None)
    assert expected in bad(["serve", str(model_folder), *extra], capsys)


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("llamacpp", "pip install 'llama-cpp-python[server]', or put a llama-server binary on PATH"),
        ("auto", "pip install 'llama-cpp-python[server]'"),
        ("transformers", "a GGUF file is served by llama.cpp (--engine llamacpp)"),
    ],
)
def test_gguf_without_llama_cpp_names_the_package(
    gguf_file: Path, engine: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lorastudio.serve.engines import installed

    if installed("llamacpp"):
        pytest.skip("llama.cpp is installed here: the message is for machines without it")
    err = bad(["serve", str(gguf_file), "--engine", engine], capsys)
    assert expected in err


@pytest.mark.parametrize(
    ("host", "key_env", "key", "generated"),
    [
        ("127.0.0.1", None, None, False),
        ("localhost", None, None, False),
        ("::1", None, None, False),
        ("127.0.0.1", "STUDIO_TEST_KEY", "from-env", False),
        ("0.0.0.0", "STUDIO_TEST_KEY", "from-env", False),
        ("0.0.0.0", None, "generated", True),
        ("192.168.1.5", None, "generated", True),
    ],
)
def test_non_loopback_host_needs_a_key(
    host: str, key_env: str | None, key: str | None, generated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastudio.serve.server import api_key

    monkeypatch.setenv("STUDIO_TEST_KEY", " from-env ")
    value, made = api_key(host, key_env)
    assert made is generated
    if key == "generated":
        assert value and len(value) >= 32 and value != api_key(host, key_env)[0]  # a fresh one each time
    else:
        assert value == key


@pytest.mark.parametrize(("r", "rank"), [(4, 8), (16, 16), (17, 32), (64, 64), (300, 320), (4096, 512)])
def test_vllm_command_names_the_adapter_as_a_lora_module(tmp_path: Path, r: int, rank: int) -> None:
    from lorastudio.serve.engines import ServeTarget, engine_command

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": r}))
    target = ServeTarget(name="pirate", base="/models/SmolLM2-135M", adapter=adapter)
    cmd, key_var, models = engine_command("vllm", target, "pirate", "127.0.0.1", 8123)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--lora-modules") + 1] == f"pirate={adapter}" and "--enable-lora" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == str(rank)
    assert key_var == "VLLM_API_KEY" and models == ("pirate", "SmolLM2-135M")


def adapter_folder(folder: Path, rank: int) -> Path:
    """An adapter folder as peft writes it, as far as ``studio serve`` reads it (its config; no weights load)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return folder


def test_vllm_serves_several_adapters_on_one_base(tmp_path: Path) -> None:
    from lorastudio.serve.engines import ServeTarget, combine_targets, engine_command

    ranks = {"pirate": 8, "pirate-step40": 64, "poet": 17}
    resolved = [
        ServeTarget(name=name, base="/models/SmolLM2-135M", adapter=adapter_folder(tmp_path / name, rank))
        for name, rank in ranks.items()
    ]
    target = combine_targets(["pirate", "pirate@40", "poet"], resolved)
    cmd, key_var, models = engine_command("vllm", target, target.name, "127.0.0.1", 8123)
    assert cmd[cmd.index("--model") + 1] == "/models/SmolLM2-135M" and "--enable-lora" in cmd
    assert cmd[cmd.index("--max-loras") + 1] == "3"
    assert cmd[cmd.index("--max-lora-rank") + 1] == "64"  # the highest of the three, as vLLM takes it
    start = cmd.index("--lora-modules") + 1
    assert cmd[start : start + 3] == [f"{name}={tmp_path / name}" for name in ranks]
    assert cmd.count("--lora-modules") == 1 and cmd[start + 3 :] == []
    # each adapter is asked for by its run's name; the bare base by its folder's name
    assert models == ("pirate", "pirate-step40", "poet", "SmolLM2-135M") and key_var == "VLLM_API_KEY"


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ({"base": "Qwen/Qwen1.5-0.5B"}, "b: its base is Qwen/Qwen1.5-0.5B, but a's is /models/tiny-base"),
        (
            {"adapter": None},
            "b: several targets serve runs' adapters on one base, and this one has no adapter",
        ),
        ({"name": "same"}, "same: named twice; give each run (or checkpoint) once"),
    ],
)
def test_several_targets_refused(tmp_path: Path, second: dict, expected: str) -> None:
    from lorastudio.errors import StudioError
    from lorastudio.serve.engines import ServeTarget, combine_targets

    first = ServeTarget(name="same", base="/models/tiny-base", adapter=adapter_folder(tmp_path / "a", 8))
    fields = {"name": "other", "base": "/models/tiny-base", "adapter": adapter_folder(tmp_path / "b", 8)}
    with pytest.raises(StudioError) as caught:
        combine_targets(["a", "b"], [first, ServeTarget(**{**fields, **second})])
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("transformers", "transformers' server (--engine transformers) loads one model"),
        ("llamacpp", "llama.cpp's server (--engine llamacpp) serves one GGUF file"),
        ("auto", "(auto's choice here: vLLM needs a CUDA GPU with vllm installed)"),
        ("vllm", "vLLM is not installed: pip install vllm"),
    ],
)
def test_several_adapters_need_vllm(
    engine: str, expected: str, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two real runs of one recipe with adapters: refused by engines that serve one model, naming the engine."""
    from lorastudio import registry
    from lorastudio.serve.engines import installed
    from lorastudio.train.launch.runs import create_run

    if engine in ("auto", "vllm") and installed("vllm"):
        pytest.skip("vLLM is installed here: it serves them")
    runs = [create_run(registry.load("tiny-pirate")) for _ in range(2)]
    for run, rank in zip(runs, (8, 32), strict=True):
        adapter_folder(run / "adapter", rank)
    err = bad(["serve", runs[0].name, runs[1].name, "--engine", engine, "--port", str(free_port())], capsys)
    assert expected in err
    if engine != "vllm":
        assert "2 adapters on one base are served by vLLM's multi-LoRA (--engine vllm, on a CUDA GPU)" in err
        assert "serve each run with its own studio serve, on its own --port" in err


def test_several_model_folders_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        folders.append(str(tmp_path / name))
    err = bad(["serve", *folders], capsys)
    assert (
        f"{folders[0]}: several targets serve runs' adapters on one base, and this one has no adapter" in err
    )


def test_port_in_use_refused(model_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        err = bad(["serve", str(model_folder), "--port", str(port), "--engine", "transformers"], capsys)
    assert f"--port {port}: port {port} on 127.0.0.1 is in use; pick another with --port" in err


def test_run_without_adapter_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from lorastudio import registry
    from lorastudio.train.launch.runs import create_run

    run = create_run(registry.load("tiny-pirate"))  # created, never trained: no adapter
    err = bad(["serve", run.name, "--port", str(free_port())], capsys)
    assert f"run {run.name} has no adapter yet" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "no-such-run-anywhere"], "no-such-run-anywhere"),
        (["serve", "stop"], "serve stop needs one server id, or all"),
        (["serve", "stop", "../etc"], "../etc: not a server id"),
        (["serve", "stop", "nothing-like-it"], "nothing-like-it: no such server"),
        (["serve", "list", "extra"], "serve list takes no argument (got extra)"),
    ],
)
def test_bad_words_refused(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in bad(argv, capsys)


def test_stop_signals_only_a_proven_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A serve.json naming a live process that is not this server (another command line): never signalled."""
    from lorastudio.train.run.rundir import create_time

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        path = serves_dir() / "impostor-1"
        path.mkdir(parents=True)
        command = (sys.executable, "-m", "lorastudio.serve.hfserve", "impostor", "--port", "1")
        write_info(
            path,
            ServeInfo(
                id=path.name,
                target="x",
                engine="transformers",
                host="127.0.0.1",
                port=1,
                url="http://127.0.0.1:1/v1",
                models=("impostor",),
                pid=other.pid,
                pid_started=create_time(other.pid),
                command=command,
                status="ready",
            ),
        )
        assert listed()[path.name]["status"] == "died"
        assert cli.main(["serve", "stop", path.name]) == 0
        assert "impostor-1 was not running (stopped)" in capsys.readouterr().out
        assert other.poll() is None, "a process not proven to be the server was signalled"
        assert read_info(path).status == "stopped"
    finally:
        other.kill()
        other.wait()


def test_damaged_serve_json_listed_with_its_reason() -> None:
    path = serves_dir() / "broken-1"
    path.mkdir(parents=True)
    (path / SERVE_FILE).write_text('{"id": "broken-1", "port": "eighty"}')
    row = listed()["broken-1"]
    assert row["status"] == "damaged" and SERVE_FILE in row["problem"]
    code, out, _ = studio("serve", "list")
    assert code == 0 and "broken-1  damaged:" in out


@pytest.mark.slow  # the engine starts (transformers imports) before it finds the model cannot load
def test_model_the_engine_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import psutil

    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # no model_type: transformers cannot load it
    code = cli.main(["serve", str(folder), "--port", str(free_port()), "--engine", "transformers"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the transformers server exited (code 1) before answering: ValueError: Unrecognized model" in err
    row = next(row for row in listed().values() if row["target"] == str(folder))
    assert row["status"] == "failed" and "exited (code 1)" in row["error"]
    assert f"(its log: {row['dir']}/engine.log)" in err
    assert not psutil.pid_exists(row["pid"]) or psutil.Process(row["pid"]).status() == psutil.STATUS_ZOMBIE


# -- real servers (transformers' own, on CPU) ----------------------------------------------------------


def start(target: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [STUDIO_BIN, "serve", target, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def started(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err
    server_id = out.split("(id ", 1)[1].split(")", 1)[0]
    return {"id": server_id, "out": out, **listed()[server_id]}


@pytest.fixture(scope="module")
def servers(tiny_model: Path, trained_run: Path) -> Iterator[dict[str, dict]]:
    """The tiny base and the tuned run (with an API key), started side by side; stopped whatever happens."""
    os.environ["STUDIO_TEST_SERVE_KEY"] = "right-key"
    base_port, tuned_port = free_port(), free_port()
    clock = time.monotonic()
    base = start(str(tiny_model), "--port", str(base_port))
    tuned = start(trained_run.name, "--port", str(tuned_port), "--api-key-env", "STUDIO_TEST_SERVE_KEY")
    try:
        found = {"base": started(base), "tuned": started(tuned)}
        found["base"]["seconds"] = time.monotonic() - clock
        yield found
    finally:
        for proc in (base, tuned):
            if proc.poll() is None:
                proc.kill()
        studio("serve", "stop", "all")
        os.environ.pop("STUDIO_TEST_SERVE_KEY", None)


def client(server: dict, key: str = "unused") -> object:
    from openai import OpenAI

    return OpenAI(base_url=server["url"], api_key=key, max_retries=0, timeout=120)


def ask(server: dict, key: str = "unused", stream: bool = False) -> str:
    api = client(server, key)
    reply = api.chat.completions.create(  # type: ignore[attr-defined]
        model=server["models"][0], messages=QUESTION, max_tokens=30, temperature=0, stream=stream
    )
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in reply if chunk.choices)
    return str(reply.choices[0].message.content)


def test_served_detached_and_listed(servers: dict[str, dict], trained_run: Path) -> None:
    import psutil

    base, tuned = servers["base"], servers["tuned"]
    assert base["status"] == tuned["status"] == "ready"
    assert base["engine"] == tuned["engine"] == "transformers"
    assert base["models"] == ["tiny-base"] and tuned["models"] == [trained_run.name]
    assert not base["api_key"] and tuned["api_key"]
    for server in (base, tuned):
        # its own session, and no longer a child of the `studio serve` that started it (which has exited)
        assert os.getsid(server["pid"]) == server["pid"] != os.getsid(0)
        assert psutil.Process(server["pid"]).ppid() != os.getpid()
        assert f"stop it with: studio serve stop {server['id']}" in server["out"]
    # the tuned run's adapter was merged in studio export's merged format, inside the server's directory
    merged = Path(tuned["dir"]) / trained_run.name
    assert (merged / "model.safetensors").is_file() and (merged / "export.json").is_file()


def test_streamed_and_plain_answers_agree(servers: dict[str, dict]) -> None:
    plain = ask(servers["base"])
    assert plain and ask(servers["base"], stream=True) == plain


def test_tuned_answer_differs_from_base_as_chat_does(servers: dict[str, dict]) -> None:
    from lorastudio.demo.tinydata import PIRATE_RE

    tuned = ask(servers["tuned"], key="right-key")
    base = ask(servers["base"])
    assert PIRATE_RE.search(tuned) and not PIRATE_RE.search(base), (tuned, base)
    assert ask(servers["tuned"], key="right-key", stream=True) == tuned


def test_wrong_api_key_refused(servers: dict[str, dict]) -> None:
    import openai

    with pytest.raises(openai.AuthenticationError) as caught:
        ask(servers["tuned"], key="wrong-key")
    assert caught.value.status_code == 401 and "invalid API key" in str(caught.value)
    with pytest.raises(openai.AuthenticationError):
        client(servers["tuned"], key="wrong-key").models.list()  # type: ignore[attr-defined]


def test_stop_releases_the_port(servers: dict[str, dict]) -> None:
    import psutil

    base = servers["base"]
    assert not port_free(base["port"])
    code, out, err = studio("serve", "stop", base["id"])
    assert code == 0 and f"stopped {base['id']}" in out, err
    assert not psutil.pid_exists(base["pid"]) or psutil.Process(base["pid"]).status() == psutil.STATUS_ZOMBIE
    assert port_free(base["port"])
    assert listed()[base["id"]]["status"] == "stopped"
    code, out, _ = studio("serve", "stop", base["id"])
    assert code == 0 and f"{base['id']} was not running (stopped)" in out
