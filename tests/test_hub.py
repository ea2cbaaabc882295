"""An unreachable hub is found out at once: cached models and data sets load without huggingface_hub's retries,
missing ones fail with one message saying why, and a reachable hub (or one behind a proxy) is left alone.

The hub is made unreachable the way a user's box is, with no mock: ``HF_ENDPOINT`` names a local port nothing
listens on. The cached model is the real Qwen3 tokenizer laid out as the hub's cache keeps a download.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STUDIO_BIN, npm_tokenizer_dir

from lorastudio import hub

PIRATE = Path(__file__).parent.parent / "recipes" / "data" / "tiny_pirate.jsonl"


@pytest.fixture(autouse=True)
def _decide_again() -> Iterator[None]:
    hub.forget()
    yield
    hub.forget()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_probe_names_a_port_nothing_listens_on(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert hub.probe() == f"no connection to 127.0.0.1:{port} (Connection refused)"


def test_probe_says_a_host_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://studio-test.invalid")  # .invalid never resolves (RFC 2606)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    reason = hub.probe()
    assert reason in (
        "studio-test.invalid does not resolve",
        "no answer from studio-test.invalid within 1.5 s",
    )


def test_a_listening_hub_is_reachable_and_a_proxy_is_left_to_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.delenv("HTTPS_PROXY", raising=False)
        assert hub.probe() is None
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub.probe() is None


def test_settle_puts_the_process_in_offline_mode_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    # Imported before the decision, as in the TUI: their flags follow it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    reason = hub.settle()
    assert reason == f"the hub cannot be reached: no connection to 127.0.0.1:{port} (Connection refused)"
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert datasets.config.HF_HUB_OFFLINE is True
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.co")
    assert hub.settle() == reason  # decided once per process


def test_offline_mode_set_by_the_user_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert hub.settle() == "offline mode is set (HF_HUB_OFFLINE)"


# -- the real command, as a user on an air-gapped box runs it ------------------------------------------------------


@pytest.fixture
def air_gapped(tmp_path: Path, studio_home: Path) -> dict[str, str]:
    """An environment whose hub does not answer and whose Hugging Face cache holds one download of
    ``Qwen/Qwen3-0.6B`` (its tokenizer and config) and one of the data set ``someone/pirate-chats``."""
    snapshot = tmp_path / "hf" / "hub" / "models--Qwen--Qwen3-0.6B" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(npm_tokenizer_dir("qwen3") / name, snapshot / name)
    (snapshot / "config.json").write_text(
        json.dumps({"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]})
    )
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abc")
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME")
    }
    env.update(
        HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(tmp_path / "hf" / "datasets"),
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
    )
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        env.pop(name, None)
    # The data set as datasets keeps a hub download: built by datasets itself, under the hub name.
    build = (
        "import datasets, json, shutil, sys\n"
        "from pathlib import Path\n"
        "ds = datasets.load_dataset('json', data_files=sys.argv[1], split='train', cache_dir=sys.argv[2])\n"
        "built = Path(ds.cache_files[0]['filename']).parent\n"
        "target = Path(sys.argv[3]) / 'someone___pirate-chats' / 'default' / '0.0.0' / built.name\n"
        "target.mkdir(parents=True)\n"
        "info = json.loads((built / 'dataset_info.json').read_text())\n"
        "info['dataset_name'] = info['splits']['train']['dataset_name'] = 'pirate-chats'\n"
        "(target / 'dataset_info.json').write_text(json.dumps(info))\n"
        "shutil.copy(built / 'json-train.arrow', target / 'pirate-chats-train.arrow')\n"
    )
    done = subprocess.run(
        [
            str(Path(STUDIO_BIN).parent / "python"),
            "-c",
            build,
            str(PIRATE),
            str(tmp_path / "build"),
            env["HF_DATASETS_CACHE"],
        ],
        capture_output=True,
        text=True,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    return env


def preview(env: dict[str, str], tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    recipe = tmp_path / "hub-qwen.yaml"
    recipe.write_text(
        "name: hub-qwen\ndescription: Qwen3 from the hub\n"
        "model: {name: Qwen/Qwen3-0.6B, chat_template: tokenizer}\n"
        "data: {source: someone/pirate-chats, format: dolly}\n"
    )
    # Before: each file asked of the hub was retried five times (2 min 51 s for this tokenizer).
    return subprocess.run(
        [STUDIO_BIN, "preview", str(recipe), *overrides], capture_output=True, text=True, timeout=150, env=env
    )


def test_a_cached_model_and_data_set_preview_without_the_hub(
    air_gapped: dict[str, str], tmp_path: Path
) -> None:
    out = preview(air_gapped, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "<|im_start|>user\nWhat color is the pearl?<|im_end|>" in out.stdout
    assert "Arr, the pearl be white, matey!<|im_end|>⟧" in out.stdout
    assert "Retrying" not in out.stderr
    assert "Traceback" not in out.stderr


def test_what_is_not_cached_fails_at_once_saying_why(air_gapped: dict[str, str], tmp_path: Path) -> None:
    port = air_gapped["HF_ENDPOINT"].rsplit(":", 1)[1]
    why = f"the hub cannot be reached: no connection to 127.0.0.1:{port} (Connection refused)"
    out = preview(air_gapped, tmp_path, "model.name=nobody/missing-model")
    assert out.returncode == 2
    assert "Retrying" not in out.stderr
    assert out.stderr.strip() == (
        f"studio: model.name: 'nobody/missing-model' is not in the local Hugging Face cache, and {why}; use a "
        "local path, a .gguf file, or an offline model ('smollm2-135m-instruct', 'tiny')"
    )
    out = preview(air_gapped, tmp_path, "data.source=someone/other-chats")
    assert out.returncode == 2
    assert "Retrying" not in out.stderr
    assert out.stderr.strip() == (
        f"studio: data.source: 'someone/other-chats' split 'train' is not in the local datasets cache, and {why}; "
        "use a local file instead (data.source: path/to/file.jsonl)"
    )
