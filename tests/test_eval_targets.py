"""``studio eval`` targets beyond runs and exports (issue 40): an OpenAI-compatible endpoint URL (lm-eval's
``local-chat-completions`` against a server studio starts), a GGUF file (loaded as chat loads it), and the
vLLM backend's message where vLLM or CUDA is missing."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STUDIO_BIN

from lorastudio.cli import main
from lorastudio.evaluate.job import create_eval, list_evals, summarise
from lorastudio.evaluate.runner import RESULTS_FILE, SAMPLES_FILE
from lorastudio.evaluate.spec import make_spec
from lorastudio.train.run.eventlog import EVENTS_FILE, read_all


def studio(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_job(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorastudio.evaluate.job", str(folder)],
        capture_output=True,
        text=True,
        timeout=1200,
    )


def docs_of(folder: Path, target: str) -> dict[int, dict]:
    lines = map(json.loads, (folder / SAMPLES_FILE).read_text().splitlines())
    return {d["doc_id"]: d for d in lines if d["eval_target"] == target}


def values_of(folder: Path, target: str, task: str) -> dict[str, float]:
    return json.loads((folder / RESULTS_FILE).read_text())["lm_eval"][target][task]["results"][task]


# -- vLLM: its path needs CUDA and vLLM; without them the message says which ----------------------------


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_names_it(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(list_evals())
    code, err = studio(
        "eval", str(tiny_model), "--tasks", "studio_arithmetic", "--backend", "vllm", capsys=capsys
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(
        "studio: eval backend vllm: vLLM is not installed: pip install vllm (it needs a CUDA GPU)"
    )
    assert len(list_evals()) == before  # refused before any directory was made


def test_endpoint_without_lm_evals_api_modules_names_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tenacity" else real(name, *a)
    )
    url = "http://127.0.0.1:1/v1"
    code, err = studio("eval", url, "--tasks", "studio_arithmetic", capsys=capsys)
    assert code == 2
    assert err.strip() == (
        f"studio: eval target {url}: lm-eval's endpoint models need tenacity: pip install 'lm-eval[api]' "
        "(or 'lorastudio[eval]')"
    )


def test_endpoint_cannot_be_judged_generations(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    code, err = studio(
        "eval", "http://127.0.0.1:1/v1", "--prompts", str(prompts), "--score", "exact", capsys=capsys
    )
    assert code == 2
    assert "an endpoint URL only runs tasks" in err
    assert len(err.strip().splitlines()) == 1


# -- an endpoint URL: studio serve's transformers server, on CPU -----------------------------------------

needs_api = pytest.mark.skipif(
    importlib.util.find_spec("tenacity") is None, reason="lm-eval's api extra (tenacity) is not installed"
)


@pytest.fixture(scope="module")
def tiny_server(tiny_model: Path) -> Iterator[str]:
    """The tiny model served by ``studio serve`` (transformers' server); its ``/v1`` URL."""
    proc = subprocess.run(
        [STUDIO_BIN, "serve", str(tiny_model), "--port", str(free_port()), "--engine", "transformers"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # "serving M with E at URL (id ID)"
    server_id = proc.stdout.split("(id ", 1)[1].split(")", 1)[0]
    try:
        yield next(word for word in proc.stdout.split() if word.startswith("http://"))
    finally:
        subprocess.run([STUDIO_BIN, "serve", "stop", server_id], capture_output=True, timeout=120)


@needs_api
@pytest.mark.slow
def test_endpoint_scores_a_generation_task_as_the_local_model_does(
    tiny_model: Path, tiny_server: str, tmp_path: Path
) -> None:
    """Greedy decoding: the endpoint's replies, filtered answers and exact-match rate are the local model's."""
    task = "studio_arithmetic"
    spec = make_spec(targets=(tiny_server, str(tiny_model)), tasks=(task,), limit=6)
    folder = create_eval(spec, home=tmp_path)
    result = run_job(folder)
    assert result.returncode == 0, summarise(folder).cause
    assert summarise(folder).status == "done", summarise(folder).cause
    remote, local = values_of(folder, tiny_server, task), values_of(folder, str(tiny_model), task)
    key = "exact_match,first_number"
    assert remote[key] == local[key]
    remote_docs, local_docs = docs_of(folder, tiny_server), docs_of(folder, str(tiny_model))
    assert sorted(remote_docs) == sorted(local_docs) == list(range(6))
    for doc_id, doc in local_docs.items():
        assert remote_docs[doc_id]["resps"] == doc["resps"], doc_id
        assert remote_docs[doc_id]["filtered_resps"] == doc["filtered_resps"], doc_id


@needs_api
@pytest.mark.slow
def test_endpoint_log_likelihood_task_fails_saying_why(tiny_server: str, tmp_path: Path) -> None:
    folder = create_eval(make_spec(targets=(tiny_server,), tasks=("studio_general",), limit=2), home=tmp_path)
    result = run_job(folder)
    assert result.returncode == 2
    [*_, last] = [e for e in read_all(folder / EVENTS_FILE) if e["kind"] == "status"]
    assert last["status"] == "failed"
    assert last["cause"] == (
        f"eval target {tiny_server}: task studio_general scores log-likelihoods, which a chat endpoint does not "
        "give; evaluate an endpoint on generation tasks (studio_arithmetic, studio_pirate)"
    )


@needs_api
def test_endpoint_refusing_fails_the_eval_naming_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    folder = create_eval(make_spec(targets=(url,), tasks=("studio_arithmetic",), limit=1), home=tmp_path)
    result = run_job(folder)
    assert result.returncode == 2
    summary = summarise(folder)
    assert summary.status == "failed"
    assert (summary.cause or "").startswith(f"eval target {url}: cannot reach the endpoint (")


# -- a GGUF file: dequantized as chat loads it --------------------------------------------------------------


@pytest.mark.slow
def test_gguf_file_scores_as_its_dequantized_folder(
    smollm2_gguf: Path, smollm2_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``studio eval FILE.gguf`` goes through chat's GGUF path: the same replies and scores as the folder it
    dequantizes to, and the evaluation lives under the data dir (a GGUF outside runs belongs to none)."""
    task = "studio_arithmetic"
    gguf, folder_target = str(smollm2_gguf), str(smollm2_dir)
    result = subprocess.run(
        [STUDIO_BIN, "eval", gguf, folder_target, "--tasks", task, "--limit", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["path"])
    assert summarise(folder).status == "done"
    assert folder.parent.name == "evals"
    from_gguf, from_folder = values_of(folder, gguf, task), values_of(folder, folder_target, task)
    assert from_gguf["exact_match,first_number"] == from_folder["exact_match,first_number"]
    gguf_docs, folder_docs = docs_of(folder, gguf), docs_of(folder, folder_target)
    assert len(gguf_docs) == 4
    assert {i: d["resps"] for i, d in gguf_docs.items()} == {i: d["resps"] for i, d in folder_docs.items()}
    assert any(d["resps"][0][0].strip() for d in gguf_docs.values())  # real replies, not empty ones
