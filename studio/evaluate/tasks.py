"""Which task files an evaluation reads: the shipped ``studio_*`` tasks, the user's, and lm-eval's own.

Local tasks are lm-eval's YAML task format (``dataset_path: json`` with ``data_files``). studio reads each
YAML itself so that a relative ``data_files`` path is taken from the YAML's own folder (lm-eval takes it
from the working directory), and so that a malformed file is named with its line before any model loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.errors import StudioError
from lorastudio.paths import config_dir

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
"""The project's own tasks: ``studio_general`` (multiple choice), ``studio_arithmetic`` (exact match),
``studio_pirate`` (the pirate demo's held-out style judge)."""

SHIPPED = ("studio_general", "studio_arithmetic", "studio_pirate")


def user_tasks_dir() -> Path:
    """``$XDG_CONFIG_HOME/studio/tasks``: local task files found by name."""
    return config_dir() / "tasks"


@dataclass(frozen=True)
class LocalTask:
    """A local task file, its config as lm-eval reads it (``!function`` resolved), data paths made absolute."""

    name: str
    path: Path
    config: dict[str, Any]


def require_lm_eval() -> None:
    """lm-evaluation-harness is the ``eval`` extra: without it, say how to install it (not a traceback)."""
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise StudioError("studio eval needs lm-evaluation-harness: pip install 'lorastudio[eval]'")


def load_task_file(path: Path) -> LocalTask:
    """One YAML task file; a malformed one raises a :class:`StudioError` naming the file and line."""
    import yaml

    require_lm_eval()
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        config = load_yaml(path, resolve_func=True, recursive=True)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise StudioError(f"{path}{line}: not a valid task file: {exc.problem or exc.context}") from None
    except (OSError, ValueError, ImportError, AttributeError, yaml.YAMLError) as exc:
        raise StudioError(f"{path}: not a valid task file: {exc}") from None
    name = config.get("task")
    if not isinstance(name, str) or not name:
        raise StudioError(f"{path}: not a task file: it has no `task:` name (lm-eval's YAML task format)")
    kwargs = config.get("dataset_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("data_files") is not None:
        config["dataset_kwargs"] = {**kwargs, "data_files": _absolute(kwargs["data_files"], path.parent)}
        for where in _paths(config["dataset_kwargs"]["data_files"]):
            if not Path(where).exists():
                raise StudioError(f"{path}: data_files names {where}, which does not exist")
    return LocalTask(name, path.resolve(), config)


def _absolute(files: Any, folder: Path) -> Any:
    if isinstance(files, str):
        return files if "://" in files or Path(files).is_absolute() else str(folder / files)
    if isinstance(files, list):
        return [_absolute(f, folder) for f in files]
    if isinstance(files, dict):
        return {k: _absolute(v, folder) for k, v in files.items()}
    return files


def _paths(files: Any) -> list[str]:
    if isinstance(files, str):
        return [] if "://" in files else [files]
    if isinstance(files, list):
        return [p for f in files for p in _paths(f)]
    if isinstance(files, dict):
        return [p for f in files.values() for p in _paths(f)]
    return []


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if p.is_file()) if folder.is_dir() else []


def local_tasks() -> dict[str, LocalTask]:
    """Tasks found by name: the shipped ones, then the user's folder (a same name there wins)."""
    found: dict[str, LocalTask] = {}
    for folder in (SHIPPED_DIR, user_tasks_dir()):
        for path in _yaml_files(folder):
            task = load_task_file(path)
            found[task.name] = task
    return found


def resolve_tasks(names: tuple[str, ...]) -> list[str | dict[str, Any]]:
    """What ``simple_evaluate`` takes for each task: a local task's config, or an lm-eval task name.

    A name may be a YAML file or a folder of them. A name neither local nor lm-eval's is refused now,
    naming it; so is lm-eval's own task when the data sets are offline and not cached (said by the job).
    """
    require_lm_eval()
    local = local_tasks()
    resolved: list[str | dict[str, Any]] = []
    unknown: list[str] = []
    manager: Any = None
    for name in names:
        path = Path(name).expanduser()
        if path.suffix in (".yaml", ".yml") or path.is_dir():
            files = _yaml_files(path) if path.is_dir() else [path]
            if not path.exists() or not files:
                raise StudioError(f"task {name}: no such task file or folder of .yaml task files")
            resolved += [load_task_file(f).config for f in files]
        elif name in local:
            resolved.append(local[name].config)
        else:
            if manager is None:
                from lm_eval.tasks import TaskManager

                manager = TaskManager()
            if name in manager.all_tasks:
                resolved.append(name)
            else:
                unknown.append(name)
    if unknown:
        raise StudioError(
            f"unknown task {', '.join(unknown)}: not a shipped task ({', '.join(SHIPPED)}), not a task file in "
            f"{user_tasks_dir()}, nor one of lm-eval's; name a YAML task file (lm-eval's format) or check the name"
        )
    return resolved


def hub_offline() -> bool:
    """Data sets cannot be fetched now (``HF_DATASETS_OFFLINE`` or ``HF_HUB_OFFLINE``)."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def offline_hint(task: str) -> str:
    """What to do when lm-eval's own task cannot load its data set here."""
    return (
        f"task {task}: its data set is not in the cache and the hub is offline; run it once online to cache it, "
        f"or write a local task ({', '.join(SHIPPED)} show the format)"
    )
