"""``studio export``: a run as an adapter, a merged model or a GGUF, its size estimated, pushed to the Hub."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lorastudio.cli.console import _progress_printer
from lorastudio.jsonout import dumps


def cmd_export(args: argparse.Namespace) -> int:
    from lorastudio.export.exporter import ExportRequest, estimate_bytes, export, is_export_dir
    from lorastudio.export.push import push_export
    from lorastudio.export.staging import human_size

    existing = Path(args.run).expanduser()
    if args.push and is_export_dir(existing):  # push a finished export again, nothing re-exported
        print(push_export(existing.resolve(), args.push, private=args.private))
        return 0
    request = ExportRequest(
        args.run,
        args.format,
        args.checkpoint,
        args.quant,
        Path(args.out) if args.out else None,
        args.force,
        args.dtype,
    )
    if args.estimate:
        size = estimate_bytes(request)
        print(dumps({"estimated_bytes": size}) if args.json else human_size(size))
        return 0
    result = export(request, None if args.json else _progress_printer(f"export {args.format}"))
    if args.json:
        print(dumps(result.to_json()))
    else:
        print(
            f"{args.format}{f' {result.quant}' if result.quant else ''}: estimated "
            f"{human_size(result.estimated_bytes)}, measured {human_size(result.measured_bytes)}, "
            f"{result.seconds:.1f} s",
            file=sys.stderr,
        )
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(result.out)
    if args.push:
        print(push_export(result.out, args.push, private=args.private))
    return 0
