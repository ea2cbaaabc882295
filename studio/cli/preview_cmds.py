"""``studio preview`` and ``studio prepare``: what training will see of a recipe's data.

:func:`build_preview` is the ONE preview builder: SFT and the preference/RL methods (dpo, kto, orpo, grpo,
reward) alike, it encodes the asked rows and the data set's statistics into a :class:`Preview`. ``studio
preview`` prints it (:func:`print_preview`) or writes it as JSON (:func:`preview_json`); the MCP server's
``preview`` tool returns it as plain text (:func:`preview_sample_text`). ``studio prepare`` fills the
prepared-data cache and prints its statistics.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio.cli.console import _console, _progress_printer
from lorastudio.jsonout import dumps

Skipped = dict[str, Any]
"""A row the encoder refused: ``{"index": ROW, "skipped": REASON}``."""


@dataclass(frozen=True)
class Preview:
    """Encoded rows of a recipe's data and the whole data set's statistics, as training will see them."""

    recipe: Any
    """The resolved :class:`~lorastudio.recipe.Recipe`."""
    tokenizer: Any
    """The tokenizer the rows were encoded with (to show their tokens)."""
    format: str
    """The data format the encoder read the rows in."""
    template: str
    """The chat template's name."""
    rows: int
    """How many rows the data set has."""
    samples: list[tuple[int, Any] | Skipped]
    """Each asked row in order: (its index, its encoded sample) or, when refused, :data:`Skipped`."""
    stats: Any
    """The data set's statistics: SFT's ``DatasetStats``, a method's ``MethodStats`` (both have ``to_json``)."""
    rewards: list[dict[str, Any]] = field(default_factory=list)
    """GRPO's rewards: each one's name, weight and (a user's function) file."""

    @property
    def method(self) -> str | None:
        """The preference/RL method (``dpo``, ``grpo``, ...); None for SFT, whose sample is one sequence."""
        return None if self.recipe.train.supervised else self.recipe.train.method


def build_preview(
    recipe: Any, index: int = 0, count: int = 1, progress: Callable[..., Any] | None = None
) -> Preview:
    """Rows ``index`` to ``index + count - 1`` of ``recipe``'s data encoded, and the data set's statistics
    (``progress`` hears SFT's slow first-use work: building tiny, fetching or dequantizing a model)."""
    if recipe.train.supervised:
        from lorastudio.data.prepare import prepare
        from lorastudio.data.prepared.fastencode import compute_stats

        prepared = prepare(recipe, progress)
        table = prepared.rows.rows
        samples = _encode(lambda at: prepared.encoder.encode_row(table[at], at), len(table), index, count)
        return Preview(
            recipe,
            prepared.tokenizer,
            prepared.encoder.format,
            prepared.encoder.template_name,
            len(table),
            samples,
            compute_stats(prepared.encoder, table),
        )
    from lorastudio.data.preference import encode_rows, method_encoder

    encoder, loaded = method_encoder(recipe)
    rows = loaded.rows
    samples = _encode(lambda at: encoder.encode_row(rows[at]), len(rows), index, count)
    _, stats = encode_rows(encoder, rows)
    return Preview(
        recipe,
        encoder.tokenizer,
        encoder.format,
        encoder.template_name,
        len(rows),
        samples,
        stats,
        _reward_names(recipe),
    )


def _encode(
    encode: Callable[[int], Any], rows: int, index: int, count: int
) -> list[tuple[int, Any] | Skipped]:
    """Rows ``index`` to ``index + count - 1`` (those that exist) encoded; a refused row as :data:`Skipped`."""
    from lorastudio.data.formats import SkipRow

    samples: list[tuple[int, Any] | Skipped] = []
    for at in range(index, min(rows, index + count)):
        try:
            samples.append((at, encode(at)))
        except SkipRow as skip:
            samples.append({"index": at, "skipped": str(skip)})
    return samples


def _reward_names(recipe: Any) -> list[dict[str, Any]]:
    if recipe.grpo is None:
        return []
    from lorastudio.train.trainer.rewards import describe

    return [
        {"name": describe(r), "weight": r.weight, **({"file": r.python} if r.python else {})}
        for r in recipe.grpo.rewards
    ]


def sample_parts(preview: Preview, sample: Any) -> dict[str, list[Any]]:
    """The token pieces of one encoded sample: SFT's one sequence (under ``""``), or a method's parts
    (``prompt``, then ``chosen`` and ``rejected``, or ``completion``)."""
    if preview.method is None:
        from lorastudio.data.tokenview import pieces

        return {"": pieces(preview.tokenizer, sample)}
    from lorastudio.data.preference import sample_parts as method_parts

    return method_parts(preview.tokenizer, sample)


def preview_json(preview: Preview) -> dict[str, Any]:
    """``studio preview --json``: every sample's pieces, the statistics (and a GRPO recipe's rewards)."""
    from lorastudio.data.preference import method_sample_json
    from lorastudio.data.tokenview import pieces, sample_json

    samples = [
        s
        if isinstance(s, dict)
        else sample_json(pieces(preview.tokenizer, s[1]), s[1], s[0])
        if preview.method is None
        else method_sample_json(preview.tokenizer, s[1], s[0])
        for s in preview.samples
    ]
    return {
        "recipe": preview.recipe.name,
        **({"method": preview.method} if preview.method is not None else {}),
        "format": preview.format,
        "template": preview.template,
        "samples": samples,
        "stats": preview.stats.to_json(),
        **({"rewards": preview.rewards} if preview.rewards else {}),
    }


def print_preview(preview: Preview) -> None:
    """``studio preview``: the samples with trained tokens marked (colours, or ⟦ ⟧ under ``NO_COLOR``), then
    the statistics line."""
    from rich.markup import escape

    from lorastudio.data.tokenview import legend, render

    console = _console()
    no_color = "NO_COLOR" in os.environ
    method = f"  method: {preview.method}" if preview.method is not None else ""
    console.print(
        f"[bold]{escape(preview.recipe.name)}[/]{method}  format: {preview.format} "
        f"(template {escape(preview.template)})"
    )
    console.print(legend(no_color))
    for item in preview.samples:
        if isinstance(item, dict):
            console.print(f"\n[bold]sample {item['index']}[/]: skipped ({escape(str(item['skipped']))})")
            continue
        index, sample = item
        if preview.method is None:
            console.print(
                f"\n[bold]sample {index}[/]: {len(sample.input_ids)} tokens, {sample.trained_count} trained"
                f"{', truncated' if sample.truncated else ''}"
            )
            for note in sample.notes:  # how the template rendered it: think blocks, history it rewrote
                console.print(f"  · {note}", style="dim", markup=False)
        for part, items in sample_parts(preview, sample).items():
            if part:
                console.print(f"\n[bold]sample {index} · {part}[/] ({len(items)} tokens)")
            console.print(render(items, no_color=no_color))
    if preview.rewards:
        console.print(
            "\n[bold]rewards[/]: "
            + escape(", ".join(f"{r['name']} x{r['weight']:g}" for r in preview.rewards))
        )
    console.print("\n" + stats_line(preview))


def stats_line(preview: Preview) -> str:
    """The data set in one line: rows used and skipped, what was truncated (SFT: trained ratio, lengths)."""
    data = preview.stats.to_json()
    counts = f"rows {data['rows']}  used {data['used']}  skipped {sum(data['skipped'].values())} {data['skipped'] or ''}  "
    if preview.method is not None:
        return (
            counts
            + f"prompts truncated {data['prompt_truncated']}  replies truncated {data['reply_truncated']}"
        )
    return counts + (
        f"truncated {data['truncated']}  trained ratio {data['trained_ratio']:.1%}  "
        f"length p50/p90/p99/max {data['length']['p50']}/{data['length']['p90']}/"
        f"{data['length']['p99']}/{data['length']['max']}"
    )


def preview_sample_text(preview: Preview, sample: Any) -> dict[str, Any]:
    """One encoded sample as plain text, trained tokens between ⟦ and ⟧ (the MCP ``preview`` tool): SFT's
    sequence with its counts, or each part of a method's sample with its own."""
    from lorastudio.data.tokenview import render

    parts = sample_parts(preview, sample)
    if preview.method is None:
        return {
            "tokens": len(sample.input_ids),
            "trained_tokens": sample.trained_count,
            "truncated": sample.truncated,
            "text": render(parts[""], no_color=True).plain,
        }
    return {
        name: {
            "tokens": len(items),
            "trained_tokens": sum(p.trained for p in items),
            "text": render(items, no_color=True).plain,
        }
        for name, items in parts.items()
    }


def cmd_preview(args: argparse.Namespace) -> int:
    from lorastudio.registry import load

    recipe = load(args.recipe, args.overrides)
    progress = _progress_printer("preparing model") if recipe.train.supervised and not args.json else None
    preview = build_preview(recipe, args.index, args.count, progress)
    if args.json:
        print(dumps(preview_json(preview), indent=2))
    else:
        print_preview(preview)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Encode the recipe's data into the prepared-data cache (as axolotl's ``preprocess``) and print the stats."""
    from lorastudio.data.prepared.cacheindex import lookup
    from lorastudio.registry import load

    recipe = load(args.recipe, args.overrides)
    started = time.monotonic()
    if not recipe.train.supervised:  # encoded by the method's one path (data/preference.py) and cached
        from lorastudio.data.prepared.methodcache import prepare_method_data

        data = prepare_method_data(recipe, use_cache=not args.force)
        summary: dict[str, Any] = {
            "recipe": recipe.name,
            "method": recipe.train.method,
            "format": data.encoder.format,
            "template": data.encoder.template_name,
            "train_rows": len(data.train),
            "eval_rows": len(data.eval),
            "cached": data.cached is not None,
            "stats": data.stats.to_json(),
            "seconds": round(time.monotonic() - started, 2),
        }
        print(
            dumps(summary, indent=2)
            if args.json
            else f"{recipe.name}: {recipe.train.method} {data.encoder.format}, {len(data.train)} train rows, "
            f"{len(data.eval)} eval rows, skipped {dict(data.stats.skipped) or 0}"
            f"{' (from the cache)' if data.cached else ''} ({summary['seconds']} s)"
        )
        return 0
    hit = None if args.force else lookup(recipe)  # a few stat calls: no tokenizer, no transformers
    if hit is not None:
        meta = hit.meta
        summary = _prepare_summary(
            recipe,
            meta["format"],
            meta["template"],
            hit.path,
            True,
            meta["train_rows"],
            meta["eval_rows"],
            hit.stats,
        )
    else:
        summary = _prepare_now(recipe, args)
    summary["seconds"] = round(time.monotonic() - started, 2)
    if args.json:
        print(dumps(summary, indent=2))
        return 0
    stats = summary["stats"]
    print(
        f"{recipe.name}: format {summary['format']} (template {summary['template']}), "
        f"{'read from cache' if summary['from_cache'] else 'encoded'} in {summary['seconds']:.1f} s"
    )
    print(
        f"rows {stats['rows']}  used {stats['used']}  skipped {sum(stats['skipped'].values())} "
        f"{stats['skipped'] or ''}  truncated {stats['truncated']}  tokens {stats['tokens']}  "
        f"trained ratio {stats['trained_ratio']:.1%}  length p50/p90/p99/max {stats['length']['p50']}/"
        f"{stats['length']['p90']}/{stats['length']['p99']}/{stats['length']['max']}"
    )
    print(
        f"train {summary['train_rows']} sequences, eval {summary['eval_rows']}{' (packed)' if recipe.train.packing else ''}"
    )
    print(f"cache: {summary['cache']}")
    return 0


def _prepare_now(recipe: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lorastudio.data.prepare import prepare
    from lorastudio.data.prepared.cache import prepare_data

    # This process only encodes and exits (no fork follows), so the tokenizer may use every core.
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    prepared = prepare(recipe, _progress_printer("building tiny model") if not args.json else None)
    total = max(len(prepared.rows.rows), 1)
    bar = None if args.json else _progress_printer("encoding")

    def progress(stats) -> None:
        if bar is not None:
            done = stats.used + sum(stats.skipped.values())
            bar(min(done / total, 1.0) if not stats.done else 1.0, f"{done:,} rows")

    waiting = None if args.json else _progress_printer("waiting")  # another process encodes this key
    data = prepare_data(
        recipe, prepared=prepared, progress=progress, use_cache=not args.force, waiting=waiting
    )
    return _prepare_summary(
        recipe,
        data.format,
        data.template,
        data.path,
        data.from_cache,
        len(data.train),
        len(data.eval) if data.eval is not None else 0,
        data.stats,
    )


def _prepare_summary(
    recipe: Any,
    fmt: str,
    template: str,
    path: Path,
    from_cache: bool,
    train_rows: int,
    eval_rows: int,
    stats: Any,
) -> dict[str, Any]:
    """What ``studio prepare`` prints (``--json``: as is), whether the entry was read or built."""
    return {
        "recipe": recipe.name,
        "format": fmt,
        "template": template,
        "cache": str(path),
        "from_cache": from_cache,
        "train_rows": train_rows,
        "eval_rows": eval_rows,
        "stats": stats.to_json(),
    }
