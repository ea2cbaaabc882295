"""``studio recipes``, ``studio recipe show`` and ``studio validate``: the recipes, resolved and checked."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lorastudio.cli.console import _console
from lorastudio.errors import StudioError
from lorastudio.jsonout import dumps


def cmd_recipes(args: argparse.Namespace) -> int:
    from lorastudio.registry import load_all

    entries = load_all()
    if args.json:
        out = []
        for e in entries:
            r = e.recipe
            out.append(
                {
                    "name": e.file.name,
                    "path": str(e.file.path),
                    "origin": e.file.origin,
                    "model": r.model.name if r else None,
                    "data": r.data.source if r else None,
                    "method": r.method if r else None,
                    "error": e.error,
                }
            )
        print(dumps(out, indent=2))
        return 0
    from rich.table import Column, Table
    from rich.text import Text

    # Names are what the other commands take: never cut. Where each file is goes to --json; the folder of the
    # user's own recipes closes the list, so a new user learns where to put one.
    width = max((len(e.file.name) for e in entries), default=4)
    table = Table(
        Column("name", no_wrap=True, min_width=width),
        "model",
        "data",
        "method",
        "where",
        box=None,
        pad_edge=False,
    )
    for e in entries:
        r = e.recipe
        where = e.file.origin
        if r is None:
            first = e.error.splitlines()[0] if e.error else ""
            table.add_row(e.file.name, Text("invalid", style="red"), Text(first), "", Text(str(e.file.path)))
        else:
            table.add_row(
                e.file.name,
                Text(r.model.name),
                Text(_short_source(r.data.source, e.file.path.parent)),
                r.method,
                Text(where),
            )
    from lorastudio.paths import user_recipes_dir

    console = _console()
    console.print(table)
    home = str(Path.home())
    folder = str(user_recipes_dir())
    folder = "~" + folder[len(home) :] if folder.startswith(home + os.sep) else folder
    console.print(Text(f"own recipes: {folder}/*.yaml (paths: studio recipes --json)"), soft_wrap=True)
    return 0


def _short_source(source: str, folder: Path) -> str:
    """A data file beside the recipe as its recipe names it (``data/x.jsonl``); other sources kept to 50 chars."""
    try:
        return str(Path(source).relative_to(folder))
    except ValueError:
        return source if len(source) < 50 else "…" + source[-48:]


def cmd_recipe_show(args: argparse.Namespace) -> int:
    from lorastudio.registry import dump, load

    print(dump(load(args.name, args.overrides)), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from lorastudio.registry import discover, load_file

    files = discover([Path(f) for f in args.files])
    bad = 0
    for name in args.files:
        try:
            recipe = load_file(Path(name), args.overrides, files=files)
        except StudioError as exc:
            print(exc, file=sys.stderr)
            bad += 1
            continue
        from lorastudio.data.checks import offline_problems
        from lorastudio.train.trainer.trlneeds import trl_problems

        problems = offline_problems(recipe, name) + [f"{name}: {p}" for p in trl_problems(recipe)]
        if recipe.grpo is not None:  # each user reward file imported and its function found, as a run would
            from lorastudio.train.trainer.rewards import RewardError, check_rewards

            try:
                check_rewards(recipe.grpo.rewards, recipe.grpo.reward_timeout)
            except RewardError as exc:
                problems.append(f"{name}: {exc}")
        from lorastudio.train.run.recipehooks import RECIPE_CHECKS

        for check in RECIPE_CHECKS:  # as create_run makes them: train.eval_tasks' names
            try:
                check(recipe)
            except StudioError as exc:
                problems.append(f"{name}: {exc}")
        for problem in problems:
            print(problem, file=sys.stderr)
        bad += bool(problems)
        if not problems:
            print(f"{name}: ok")
    return 1 if bad else 0
