"""`studio mcp`, driven by the MCP SDK's own stdio client: tools listed with schemas, a tiny run started,
polled to done, chatted with and exported; --read-only refuses start; bad input comes back as a tool error."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import STUDIO_BIN

mcp = pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'lorastudio[mcp]')")

from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

SERVER_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def params(*extra: str) -> StdioServerParameters:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("XDG_", "HF_", "STUDIO_", "PATH", "HOME", "PYTHONPATH"))
    }
    return StdioServerParameters(command=STUDIO_BIN, args=["mcp", *extra], env={**env, **SERVER_ENV})


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def data_of(result: Any) -> Any:
    assert not result.is_error, text_of(result)
    if result.structured_content is not None:
        content = result.structured_content
        return content["result"] if set(content) == {"result"} else content
    return json.loads(text_of(result))


async def call(session: ClientSession, name: str, **arguments: Any) -> Any:
    return await session.call_tool(name, arguments)


async def wait_status(session: ClientSession, run: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = data_of(await call(session, "run_status", run=run))
        if status["status"] in ("done", "failed", "stopped", "died"):
            return status
        assert time.monotonic() < deadline, f"run still {status['status']} after {timeout} s"
        await anyio.sleep(0.5)


def run_client(body: Any, *extra: str) -> Any:
    async def main() -> Any:
        async with stdio_client(params(*extra)) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)

    return anyio.run(main)


@pytest.mark.slow
def test_agent_trains_watches_chats_and_exports_a_tiny_run(tiny_model: Path, tmp_path: Path) -> None:
    async def body(session: ClientSession) -> dict[str, Any]:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert {
            "list_recipes",
            "show_recipe",
            "validate_recipe",
            "preview",
            "start_run",
            "run_status",
            "list_runs",
            "stop_run",
            "resume_run",
            "compare_runs",
            "samples",
            "chat",
            "export",
        } <= set(tools)
        start_schema = tools["start_run"].input_schema
        assert start_schema["required"] == ["recipe"]
        assert "overrides" in start_schema["properties"]
        assert tools["export"].input_schema["properties"]["format"]["enum"] == ["adapter", "merged", "gguf"]
        assert {"greedy", "thinking"} <= set(tools["chat"].input_schema["properties"])
        assert tools["run_status"].annotations.read_only_hint is True
        assert tools["start_run"].annotations.read_only_hint is False

        names = [r["name"] for r in data_of(await call(session, "list_recipes"))]
        assert "tiny-pirate" in names
        shown = text_of(
            await call(session, "show_recipe", recipe="tiny-pirate", overrides=["train.max_steps=7"])
        )
        assert "max_steps: 7" in shown

        preview = data_of(await call(session, "preview", recipe="tiny-pirate"))
        assert preview["sample"]["trained_tokens"] > 0
        assert "⟦" in preview["sample"]["text"]
        assert preview["stats"]["rows"] == 225

        started = data_of(
            await call(
                session,
                "start_run",
                recipe="tiny-pirate",
                overrides=["train.max_steps=4", "train.save_steps=2"],
            )
        )
        run = started["run"]
        assert run.startswith("tiny-pirate-")
        status = await wait_status(session, run)
        assert status["status"] == "done", status
        assert status["step"] == 4
        assert status["loss"] is not None
        assert status["memory"]["peak_rss_mb"]
        assert run in [r["name"] for r in data_of(await call(session, "list_runs"))]

        samples = data_of(await call(session, "samples", run=run))  # tiny-pirate asks 3 held-out prompts
        assert len(samples["prompts"]) == 3
        assert samples["rounds"][0]["at"] == "start"
        assert len(samples["rounds"]) >= 2
        assert samples["rounds"][-1]["step"] == 4
        assert all(len(r["replies"]) == 3 for r in samples["rounds"])

        reply = data_of(
            await call(
                session,
                "chat",
                target=run,
                prompt="What colour is the sky?",
                max_new_tokens=8,
                greedy=True,
                thinking=False,
            )
        )
        assert reply["adapter"] is True
        assert reply["tokens"] >= 1
        assert isinstance(reply["text"], str)

        exported = data_of(await call(session, "export", run=run, format="adapter", out=str(tmp_path / "ad")))
        assert Path(exported["out"]) == tmp_path / "ad"
        assert "adapter_config.json" in exported["files"]
        assert (tmp_path / "ad" / "adapter_model.safetensors").exists()
        return status

    run_client(body)


def test_bad_input_is_a_tool_error_with_the_cli_message(studio_home: Path) -> None:
    async def body(session: ClientSession) -> None:
        bad = await call(session, "start_run", recipe="tiny-pirate", overrides=["train.max_steps=lots"])
        assert bad.is_error
        assert (
            text_of(bad)
            == "override 'train.max_steps=lots': Input should be a valid integer, unable to parse "
            "string as an integer"
        )
        unknown = await call(session, "start_run", recipe="no-such-recipe")
        assert unknown.is_error
        assert text_of(unknown).startswith("unknown recipe 'no-such-recipe' (known: ")
        missing = await call(session, "run_status", run="no-such-run")
        assert missing.is_error
        assert text_of(missing) == "no such run: 'no-such-run' (see `studio runs`)"
        checked = data_of(
            await call(session, "validate_recipe", recipe="tiny-pirate", overrides=["lora.r=0"])
        )
        assert checked == {
            "valid": False,
            "problems": ["override 'lora.r=0': Input should be greater than or equal to 1"],
        }
        assert data_of(await call(session, "validate_recipe", recipe="tiny-pirate"))["valid"] is True
        grid = await call(session, "start_sweep", recipe="tiny-pirate", grid=["lora.r=8,sixteen"])
        assert grid.is_error
        assert text_of(grid) == (
            "sweep: override 'lora.r=sixteen': Input should be a valid integer, unable to parse string as an "
            "integer (nothing was started)"
        )
        # the server is still there after the errors
        assert data_of(await call(session, "list_runs")) is not None

    run_client(body)


def test_read_only_server_has_no_tools_that_change_anything(studio_home: Path) -> None:
    async def body(session: ClientSession) -> None:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"list_recipes", "run_status", "list_runs", "compare_runs", "preview", "chat"} <= names
        assert not names & {"start_run", "stop_run", "resume_run", "export", "start_sweep", "stop_sweep"}
        refused = await call(session, "start_run", recipe="tiny-pirate")
        assert refused.is_error
        assert "start_run" in text_of(refused)

    before = set((studio_home / "data" / "studio" / "runs").glob("*"))
    run_client(body, "--read-only")
    assert set((studio_home / "data" / "studio" / "runs").glob("*")) == before


def test_agent_reads_an_evaluation_and_bad_eval_input_is_a_tool_error(studio_home: Path) -> None:
    """eval_results answers a finished evaluation's table (written by a fixture: no model run); start_eval
    refuses an unknown task and a lone base with the CLI's messages, starting nothing."""
    from eval_fixtures import figures_for, write_eval

    from lorastudio.evaluate.job import list_evals
    from lorastudio.paths import data_dir

    folder = write_eval(
        data_dir() / "evals", "20260922-150000-mcp0", ("base", "tuned"), {"base": figures_for(0.25, 0.5),
        "tuned": figures_for(0.75, 0.5)},
    )  # fmt: skip
    before = len(list_evals())

    async def body(session: ClientSession) -> None:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"start_eval", "eval_results"} <= names
        for name in (folder.name, str(folder)):
            found = data_of(await call(session, "eval_results", id=name))
            assert (found["id"], found["status"], found["done"], found["total"]) == (
                folder.name,
                "done",
                4,
                4,
            )
            assert found["targets"] == ["base", "tuned"]
            acc = next(row for row in found["table"] if row["metric"] == "studio_general/acc")
            assert acc["targets"]["tuned"] == {"value": 0.75, "stderr": 0.1, "delta": 0.5}
            assert acc["stands_out"] == ["tuned"]
        missing = await call(session, "eval_results", id="no-such-eval")
        assert missing.is_error
        assert text_of(missing) == "no evaluation 'no-such-eval' (studio evals lists them)"
        unknown = await call(session, "start_eval", targets=["x"], tasks=["no_such_task_xyz"], limit=2)
        assert unknown.is_error
        assert text_of(unknown).startswith("unknown task no_such_task_xyz: not a shipped task")
        lone = await call(session, "start_eval", targets=["base"], tasks=["studio_general"])
        assert lone.is_error
        assert text_of(lone).startswith("eval target base: name a run or an export too")
        zero = await call(session, "start_eval", targets=["x"], tasks=["studio_general"], limit=0)
        assert zero.is_error

    run_client(body)
    assert len(list_evals()) == before  # nothing was started


def test_read_only_server_reads_evaluations_but_starts_none(studio_home: Path) -> None:
    async def body(session: ClientSession) -> None:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert "eval_results" in names
        assert "start_eval" not in names

    run_client(body, "--read-only")


def test_start_run_answers_the_status_the_run_directory_holds(tmp_path: Path, monkeypatch) -> None:
    """start_run reads the run's own events: a worker that already failed is not reported as queued."""
    from lorastudio import mcpserver

    run = tmp_path / "tiny-pirate-failed"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": 1, "name": run.name, "recipe": "tiny-pirate"}))
    (run / "recipe.yaml").write_text("name: tiny-pirate\nmodel:\n  name: tiny\ndata:\n  source: x.jsonl\n")
    events = [
        {"kind": "status", "status": "queued"},
        {"kind": "status", "status": "failed", "cause": "data.source: x.jsonl does not exist"},
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    monkeypatch.setattr(mcpserver, "_start", lambda recipe: run)

    answer = mcpserver.start_run("tiny-pirate")
    assert answer["status"] == "failed"
    assert answer["cause"] == "data.source: x.jsonl does not exist"
