"""``studio mcp``: a Model Context Protocol server over stdio, so coding agents can drive studio.

Built on the official SDK's :class:`mcp.server.MCPServer`. Each tool is a typed function whose input schema
is the pydantic model the SDK derives from its signature, and each calls the same engine function as its
CLI twin (registry, data, train, chat, export). A :class:`StudioError` comes back as a tool error whose
text is the CLI's own message, never as a crash of the server. ``--read-only`` registers only the tools
that change nothing (no run is started, stopped, resumed or exported).

Tools run on the SDK's worker threads; a run is a detached worker process as with ``studio train``, so the
server can exit (or the agent disconnect) while runs go on.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from lorastudio import __version__
from lorastudio.errors import StudioError
from lorastudio.evaluate.intraining import install as install_eval_tasks

install_eval_tasks()  # train.eval_tasks checked before a run directory (train cannot import evaluate)

RecipeArg = Annotated[
    str, Field(description="a recipe name (see list_recipes) or the path of a recipe YAML file")
]
OverridesArg = Annotated[
    list[str] | None,
    Field(description="dotted overrides as on the command line, e.g. ['train.max_steps=20', 'lora.r=8']"),
]
RunArg = Annotated[
    str,
    Field(
        description="a run's full name, its path, 'latest', a recipe's name (its newest run) or a unique "
        "prefix of a run's name; no wildcards (stop_run takes only a full name or a path)"
    ),
]

INSTRUCTIONS = (
    "studio fine-tunes open LLMs with (Q)LoRA. list_recipes shows what can be trained; preview shows which tokens "
    "a recipe trains; start_run starts a detached run and returns its name; poll run_status until its status is "
    "done, failed, stopped or died; chat talks to the tuned model; export writes an adapter, a merged model or "
    "a GGUF; start_server puts a run behind an OpenAI-compatible endpoint (list_servers, stop_server); "
    "start_eval scores targets on lm-eval tasks and eval_results shows the table. Overrides are dotted "
    "recipe fields, e.g. train.max_steps=20."
)

NO_SAMPLES = "no samples recorded"


# -- recipes ----------------------------------------------------------------------------------------
def list_recipes() -> list[dict[str, Any]]:
    """Every recipe studio knows (built-in, the user's, with a path when given): name, model, data, method."""
    from lorastudio.registry import load_all

    out = []
    for entry in load_all():
        recipe = entry.recipe
        out.append(
            {
                "name": entry.file.name,
                "path": str(entry.file.path),
                "origin": entry.file.origin,
                "description": recipe.description if recipe else None,
                "model": recipe.model.name if recipe else None,
                "data": recipe.data.source if recipe else None,
                "method": recipe.method if recipe else None,
                "error": entry.error,
            }
        )
    return out


def show_recipe(recipe: RecipeArg, overrides: OverridesArg = None) -> str:
    """The fully resolved recipe (extends and overrides applied) as YAML, as `studio recipe show` prints it."""
    from lorastudio.registry import dump, load

    return dump(load(recipe, overrides or []))


def validate_recipe(recipe: RecipeArg, overrides: OverridesArg = None) -> dict[str, Any]:
    """Check a recipe and overrides without starting anything: schema, chat template name, local data file.

    Returns valid=false with one line per problem (the same lines `studio validate` prints)."""
    from lorastudio.data.checks import offline_problems
    from lorastudio.registry import load

    try:
        loaded = load(recipe, overrides or [])
    except StudioError as exc:
        return {"valid": False, "problems": str(exc).splitlines()}
    problems = offline_problems(loaded, recipe)
    return {"valid": not problems, "recipe": loaded.name, "problems": problems}


def preview(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    index: Annotated[int, Field(ge=0, description="which row of the data set")] = 0,
) -> dict[str, Any]:
    """The data set's statistics and one encoded sample as text, trained tokens between ⟦ and ⟧ (the rest is
    masked, label -100): exactly what training will see. A dpo/kto/orpo/grpo recipe's sample has one entry per
    part (prompt, chosen and rejected, or completion)."""
    from lorastudio.cli.preview_cmds import build_preview, preview_sample_text
    from lorastudio.registry import load

    loaded = load(recipe, overrides or [])
    shown = build_preview(loaded, index)  # the builder `studio preview` prints (cli/preview_cmds.py)
    if not shown.rows:
        raise StudioError(f"{loaded.data.source}: the data set has no rows")
    if index >= shown.rows:
        raise StudioError(f"index {index}: the data set has {shown.rows} rows (0 to {shown.rows - 1})")
    first = shown.samples[0]
    sample = first if isinstance(first, dict) else {"index": index, **preview_sample_text(shown, first[1])}
    return {
        "recipe": loaded.name,
        **({"method": shown.method} if shown.method is not None else {}),
        "format": shown.format,
        "template": shown.template,
        "legend": "⟦trained⟧ tokens are learned; everything else is masked (label -100)",
        "stats": shown.stats.to_json(),
        "sample": sample,
        **({"rewards": shown.rewards} if shown.rewards else {}),
    }


# -- runs -------------------------------------------------------------------------------------------
def _start(recipe: Any) -> Path:
    """Create the run directory and start its detached worker (what `studio train --detach` does)."""
    from lorastudio.train.launch.runs import start_run

    return start_run(recipe)


def start_run(recipe: RecipeArg, overrides: OverridesArg = None) -> dict[str, Any]:
    """Start training a recipe (with overrides) in a detached worker; returns the run's name at once.
    Poll run_status with that name until the status is done, failed, stopped or died."""
    from lorastudio.registry import load

    run_dir = _start(load(recipe, overrides or []))
    return {"run": run_dir.name, "path": str(run_dir), "status": "queued"}


def _sweep_of(path: Path) -> str | None:
    from lorastudio.train.launch.runs import read_meta

    sweep = read_meta(path).get("sweep")
    return str(sweep.get("name")) if isinstance(sweep, dict) and sweep.get("name") else None


def run_status(run: RunArg) -> dict[str, Any]:
    """One run's status (queued, training, done, failed, stopped, died...), step, last train and eval loss,
    best checkpoint, ETA and memory (peak GPU memory, worker RSS)."""
    from lorastudio.train.launch.runs import find_run, summarise
    from lorastudio.train.run.events import TERMINAL_STATUSES
    from lorastudio.train.run.runstate import load_state

    path = find_run(run)
    summary = summarise(path)
    state = load_state(path, curves=False)
    telemetry = state.telemetry
    gpus = [g.to_json() for g in telemetry.gpus] if telemetry else []
    live = summary.status not in TERMINAL_STATUSES
    return {
        "run": summary.name,
        "path": str(path),
        "recipe": summary.recipe,
        "status": summary.status,
        "cause": summary.cause,
        "step": summary.step,
        "max_steps": summary.max_steps,
        "loss": state.last_loss,
        "eval_loss": state.last_eval_loss,
        "best_eval_loss": state.best_eval_loss,
        "best_checkpoint": state.best_checkpoint,
        "eta_s": state.eta_s if live else None,
        "tokens_per_s": state.tokens_per_s,
        "adapter": state.adapter,
        "sweep": _sweep_of(path),
        "memory": {
            "peak_vram_mb": state.peak_vram_mb,
            "peak_rss_mb": state.peak_rss_mb,
            "rss_mb": telemetry.rss_mb if telemetry else None,
            "gpus": [
                {
                    k: g.get(k)
                    for k in ("index", "name", "memory_used_mb", "memory_total_mb", "process_memory_mb")
                    if k in g
                }
                for g in gpus
            ],
        },
        "hints": state.hints,
    }


def list_runs(
    sort: Annotated[Literal["time", "loss", "status"], Field(description="order")] = "time",
) -> list[dict[str, Any]]:
    """Every run, newest first (or by loss or status): name, recipe, status, step, last loss, best checkpoint,
    note, sweep."""
    from lorastudio.train.launch.manage import read_note, sort_runs
    from lorastudio.train.launch.runs import list_runs as all_runs

    return [
        {**r.to_json(), "note": read_note(r.path) or None, "sweep": _sweep_of(r.path)}
        for r in sort_runs(all_runs(), sort)
    ]


def stop_run(run: RunArg) -> str:
    """Ask a run to save a checkpoint and its adapter, then stop (a queued run leaves the queue)."""
    from lorastudio.train.launch.runs import stop_run as stop
    from lorastudio.train.run.runref import resolve_run

    path = resolve_run(run, exact="stop").path  # never `latest`, a recipe's name or a prefix
    if stop(path):
        return f"asked {path.name} to save and stop"
    raise StudioError(f"{path.name}: no live worker")


def resume_run(run: RunArg) -> str:
    """Continue a stopped, failed or died run from its latest checkpoint (same optimizer state)."""
    from lorastudio.train.launch.manage import resume_run as resume
    from lorastudio.train.launch.runs import find_run

    path = find_run(run)
    _, checkpoint = resume(path)
    where = f"from {checkpoint.name}" if checkpoint else "from step 0 (no checkpoint was saved)"
    return f"resuming {path.name} {where}"


def compare_runs(
    runs: Annotated[list[str], Field(min_length=2, description="two or more runs")],
) -> dict[str, Any]:
    """Two or more runs side by side: final/best train and eval loss, tokens/s, duration, peak memory, and the
    recipe fields whose values differ."""
    from lorastudio.train.launch.compare import compare_runs as compare
    from lorastudio.train.launch.runs import find_run

    return compare([find_run(name) for name in runs]).to_json()


def samples(run: RunArg) -> dict[str, Any]:
    """Replies the run generated from its sample prompts while training (when the recipe asks for them)."""
    from lorastudio.train.launch.manage import intact_state
    from lorastudio.train.launch.runs import find_run
    from lorastudio.train.run.samplelog import SampleHistory

    path = find_run(run)
    history = SampleHistory.of(intact_state(path).samples)
    if not len(history):
        return {"run": path.name, "samples": [], "message": f"{NO_SAMPLES} for {path.name}"}
    recorded = history.to_json()
    return {"run": path.name, "samples": recorded["rounds"], **recorded}


# -- sweeps -----------------------------------------------------------------------------------------
def start_sweep(
    recipe: RecipeArg,
    grid: Annotated[
        list[str],
        Field(
            min_length=1,
            description="swept fields with comma-separated values and fixed overrides, as on the "
            "command line, e.g. ['train.learning_rate=1e-4,3e-4', 'lora.r=8,16', 'train.max_steps=50']",
        ),
    ],
    name: Annotated[str | None, Field(description="the sweep's name (default RECIPE-sweep-TIME)")] = None,
    max_runs: Annotated[
        int | None,
        Field(
            ge=1, description="start at most this many (the grid's first); a grid of more than 64 needs it"
        ),
    ] = None,
) -> dict[str, Any]:
    """Start one run per point of a grid (every value is checked first; a bad one starts nothing). The runs
    wait on the device queue and train one at a time; compare_sweep ranks them, stop_sweep stops them."""
    from lorastudio.train.launch.sweep import plan_sweep
    from lorastudio.train.launch.sweep import start_sweep as start

    plan = plan_sweep(recipe, grid, name=name, max_points=max_runs, max_option="max_runs")
    started = start(plan)
    return {
        "sweep": plan.name,
        "fields": plan.keys,
        "grid_size": plan.grid_size,
        "runs": [
            {"run": path.name, **point.fields} for path, point in zip(started, plan.points, strict=True)
        ],
    }


def stop_sweep(name: Annotated[str, Field(description="the sweep's name")]) -> dict[str, Any]:
    """Stop every queued and running run of a sweep (each saves its adapter)."""
    from lorastudio.train.launch.sweep import stop_sweep as stop

    stopped, ended = stop(name)
    return {"sweep": name, "stopped": [p.name for p in stopped], "already_ended": [p.name for p in ended]}


def compare_sweep(name: Annotated[str, Field(description="the sweep's name")]) -> dict[str, Any]:
    """A sweep's runs ranked by best eval loss (final train loss when none evaluated), the best marked, with
    the swept fields' values beside each."""
    from lorastudio.train.launch.sweep import compare_sweep as compare

    return compare(name).to_json()


# -- evaluation ---------------------------------------------------------------------------------------
def start_eval(
    targets: Annotated[
        list[str],
        Field(
            min_length=1,
            description="what to score, in column order (deltas are against the first): 'base' (the first "
            "run's base model), a run (NAME, NAME@best, NAME@latest, NAME@checkpoint-N) or an export folder",
        ),
    ],
    tasks: Annotated[
        list[str],
        Field(
            min_length=1,
            description="studio_general, studio_arithmetic, studio_pirate, a YAML task file or folder "
            "(lm-eval's format), or an lm-eval task name",
        ),
    ],
    limit: Annotated[int | None, Field(ge=1, description="at most this many documents per task")] = None,
) -> dict[str, Any]:
    """Start a detached evaluation (lm-evaluation-harness) of the targets on the tasks; an unknown task or a
    run with no adapter is refused before anything starts. Poll eval_results with the id it returns."""
    from lorastudio.evaluate.job import check_and_start
    from lorastudio.evaluate.spec import make_spec

    folder = check_and_start(make_spec(targets=tuple(targets), tasks=tuple(tasks), limit=limit))
    return {"id": folder.name, "path": str(folder), "status": "started"}


def eval_results(
    id: Annotated[
        str, Field(description="an evaluation's id (start_eval's answer, `studio evals`) or folder")
    ],
) -> dict[str, Any]:
    """An evaluation's status (queued, starting, loading model, running, done, failed, stopped, died), its
    progress, and its table: a row per task/metric, each target's value, stderr and delta against the first
    target; stands_out names the targets whose delta is larger than the combined stderr."""
    from lorastudio.evaluate.scores import eval_summary, find_eval

    return eval_summary(find_eval(id))


# -- chat and export --------------------------------------------------------------------------------
_engines: dict[tuple[str, str, bool], Any] = {}
_chat_lock = threading.Lock()


def chat(
    target: Annotated[
        str,
        Field(
            description="a run (NAME, NAME@best, NAME@checkpoint-N, 'latest'), an "
            "export folder, a model folder or a .gguf file"
        ),
    ],
    prompt: Annotated[str, Field(min_length=1, description="the user message")],
    base: Annotated[bool, Field(description="the base model, without the run's adapter")] = False,
    system: Annotated[str | None, Field(description="system prompt (default: the recipe's)")] = None,
    max_new_tokens: Annotated[int | None, Field(ge=1, description="reply length limit")] = None,
    greedy: Annotated[bool | None, Field(description="greedy decoding (default: the recipe's)")] = None,
    thinking: Annotated[
        bool | None,
        Field(
            description="for a template with the switch (Qwen3's): reason before answering (default: the recipe's)"
        ),
    ] = None,
) -> dict[str, Any]:
    """One prompt, one reply from a run's tuned model (or a checkpoint, an export, the base); the model stays
    loaded for the next call with the same target."""
    from lorastudio.chat.engine import engine_for, reply_json, with_overrides

    fresh = engine_for(target, base_only=base)
    key = (str(fresh.adapter_dir), fresh.recipe.model.name, base)
    with _chat_lock:
        engine = _engines.get(key)
        if engine is None:
            fresh.load()
            _engines.clear()  # one model in memory at a time
            _engines[key] = engine = fresh
        sampling = with_overrides(
            engine.recipe.chat, max_new_tokens=max_new_tokens, greedy=greedy, enable_thinking=thinking
        )
        system = system or engine.recipe.chat.system_prompt or engine.recipe.data.system_prompt
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        reply = engine.generate(messages, sampling)
    return {"target": target, **({"loaded": fresh.source} if fresh.source else {}), **reply_json(reply)}


def export(
    run: RunArg,
    format: Annotated[Literal["adapter", "merged", "gguf"], Field(description="what to write")] = "adapter",
    checkpoint: Annotated[
        int | None, Field(ge=1, description="export checkpoint-N, not the final adapter")
    ] = None,
    quant: Annotated[
        str, Field(description="gguf type: f16, q8_0, bf16, f32, q5_1, q5_0, q4_1, q4_0")
    ] = "f16",
    out: Annotated[str | None, Field(description="output folder (default RUN/exports/FORMAT)")] = None,
    force: Annotated[bool, Field(description="replace a non-empty output folder")] = False,
) -> dict[str, Any]:
    """Export a run: its LoRA adapter, a merged 16-bit model, or a GGUF with an Ollama Modelfile. Returns the
    folder, the files and the estimated and measured sizes."""
    from lorastudio.export.exporter import ExportRequest
    from lorastudio.export.exporter import export as run_export

    request = ExportRequest(run, format, checkpoint, quant, Path(out).expanduser() if out else None, force)
    return run_export(request).to_json()


# -- model servers (studio serve) ------------------------------------------------------------------
def _server_json(path: Path, info: Any, status: str) -> dict[str, Any]:
    record = info.model_dump(mode="json", exclude={"command", "pid_started", "format"})
    return {**record, "status": status, "dir": str(path)}


def start_server(
    target: Annotated[
        str,
        Field(
            description="a run (NAME, NAME@best, NAME@checkpoint-N), an export folder, a model folder or a .gguf"
        ),
    ],
    port: Annotated[int, Field(ge=1, le=65535, description="the port to bind on 127.0.0.1")] = 8000,
    engine: Annotated[
        Literal["auto", "vllm", "llamacpp", "transformers"],
        Field(description="the serving engine (auto: llama.cpp for a GGUF, vLLM on CUDA, else transformers)"),
    ] = "auto",
) -> dict[str, Any]:
    """Serve a target on 127.0.0.1 behind an OpenAI-compatible endpoint, detached (as `studio serve`); returns once
    it answers, with its id (for stop_server), URL and model names."""
    from lorastudio.serve.server import start_server as start

    started = start(target, "127.0.0.1", port, engine)
    return _server_json(started.path, started.info, "ready")


def list_servers() -> list[dict[str, Any]]:
    """Every server studio started, newest first: id, status (starting, ready, stopped, failed, died), engine,
    URL, model names, target."""
    from lorastudio.serve.servedir import list_servers as servers

    return [
        _server_json(path, info, status)
        if info is not None
        else {"id": path.name, "status": "damaged", "problem": status}
        for path, info, status in servers()
    ]


def stop_server(
    id: Annotated[str, Field(description="a server's id (see list_servers), or a unique prefix")],
) -> dict[str, Any]:
    """Stop a server (only a process proven to be that server is signalled); says whether it was running."""
    from lorastudio.serve.server import find_server
    from lorastudio.serve.server import stop_server as stop

    path = find_server(id)
    info, live = stop(path)
    return {**_server_json(path, info, info.status), "was_running": live}


# -- the server -------------------------------------------------------------------------------------
Tool = Callable[..., Any]

READ_ONLY_TOOLS: tuple[Tool, ...] = (
    list_recipes,
    show_recipe,
    validate_recipe,
    preview,
    run_status,
    list_runs,
    compare_runs,
    compare_sweep,
    samples,
    chat,
    list_servers,
    eval_results,
)
"""Tools that change nothing: they read recipes and run directories (chat loads a model, writes nothing)."""
CHANGING_TOOLS: tuple[Tool, ...] = (
    start_run,
    stop_run,
    resume_run,
    export,
    start_sweep,
    stop_sweep,
    start_server,
    stop_server,
    start_eval,
)
"""Tools that start, stop or write something; left out with ``--read-only``."""


def tool_errors(fn: Tool) -> Tool:
    """``fn`` with a :class:`StudioError` returned as a tool error carrying its message (the CLI's line), and
    its answer made strict JSON (a figure that is not finite is null: ``jsonout.py``; the SDK would write
    ``Infinity`` into the answer's text)."""
    from mcp.types import CallToolResult, TextContent

    from lorastudio.jsonout import finite

    @functools.wraps(fn)  # the SDK reads the signature (and so the schema) through __wrapped__
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return finite(fn(*args, **kwargs))
        except StudioError as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)

    return wrapper


def build_server(read_only: bool = False) -> Any:
    """The MCP server with studio's tools (only the read-only ones when asked), on mcpwire's checked wire."""
    from mcp.types import ToolAnnotations

    from lorastudio.mcpwire import StudioServer  # every request answered, every error one line

    held_back = tuple(fn.__name__ for fn in CHANGING_TOOLS) if read_only else ()
    server = StudioServer(
        "studio", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING", held_back=held_back
    )
    for fn in READ_ONLY_TOOLS:
        server.add_tool(
            tool_errors(fn), annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False)
        )
    if not read_only:
        for fn in CHANGING_TOOLS:
            server.add_tool(
                tool_errors(fn),
                annotations=ToolAnnotations(
                    read_only_hint=False,
                    destructive_hint=fn in (stop_run, stop_sweep, stop_server),
                    open_world_hint=False,
                ),
            )
    return server


def serve(read_only: bool = False) -> int:
    """Serve over stdin/stdout until the client closes the connection."""
    try:
        import mcp.server  # noqa: F401
    except ImportError:
        raise StudioError("studio mcp needs the MCP SDK: pip install 'lorastudio[mcp]'") from None
    build_server(read_only).run("stdio")
    return 0
