"""``studio serve``: start a model server (``serve TARGET``), list them (``serve list``), stop one (``serve stop``).

The face only: flags in, lines out. What starts, proves and stops a server is the ``serve`` stage; ``parser`` only
registers the subcommand (:func:`add_arguments`, :func:`run`).
"""

from __future__ import annotations

import argparse
import sys
import time

from lorastudio.errors import StudioError

USAGE = "studio serve TARGET [TARGET...] [--port P] [--host H] [--engine E] [--api-key-env NAME] | serve list [--json] | serve stop ID|all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lorastudio.serve.engines import ENGINES
    from lorastudio.serve.server import DEFAULT_PORT

    parser.usage = USAGE
    parser.add_argument(
        "words",
        nargs="+",
        metavar="TARGET | list | stop ID",
        help="a run, RUN@best, a checkpoint, an export folder or a GGUF file (several runs: their adapters on "
        "one base, with vLLM); or list; or stop ID|all",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to bind (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1); any other needs an API key",
    )
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="serving engine (default auto)")
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require the API key held in environment variable NAME (one is generated for a non-loopback host)",
    )
    parser.add_argument("--json", action="store_true", help="serve list: one JSON object per server")


def run(args: argparse.Namespace) -> int:
    words: list[str] = args.words
    if words[0] == "list":
        if len(words) > 1:
            raise StudioError(f"serve list takes no argument (got {' '.join(words[1:])})")
        return list_command(args.json)
    if words[0] == "stop":
        if len(words) != 2:
            raise StudioError("serve stop needs one server id, or all (studio serve list shows them)")
        return stop_command(words[1])
    return start_command(words, args.host, args.port, args.engine, args.api_key_env)


def start_command(target: str | list[str], host: str, port: int, engine: str, key_env: str | None) -> int:
    from lorastudio.serve.server import start_server

    started = time.monotonic()
    result = start_server(
        target, host, port, engine, key_env, progress=lambda m: print(m, file=sys.stderr, flush=True)
    )
    info = result.info
    print(f"serving {', '.join(info.models)} with {info.engine} at {info.url} (id {info.id})")
    print(f"ready in {time.monotonic() - started:.1f} s; stop it with: studio serve stop {info.id}")
    if result.generated_key is not None:
        print(f"API key (shown once, not stored): {result.generated_key}")
    elif info.api_key:
        print("API key: the value of the variable given to --api-key-env")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"from another machine: ssh -L {info.port}:localhost:{info.port} THIS_HOST, then http://localhost:{info.port}/v1"
        )
    return 0


def list_command(as_json: bool) -> int:
    from lorastudio.jsonout import dumps
    from lorastudio.serve.servedir import list_servers

    rows = list_servers()
    if as_json:
        for path, info, status in rows:
            record = info.model_dump(mode="json") if info is not None else {"id": path.name}
            print(
                dumps(
                    {
                        **record,
                        "status": status if info is not None else "damaged",
                        "dir": str(path),
                        **({"problem": status} if info is None else {}),
                    }
                )
            )
        return 0
    if not rows:
        print("no servers (studio serve TARGET starts one)")
        return 0
    for path, info, status in rows:
        if info is None:
            print(f"{path.name}  {status}")
        else:
            key = "  key" if info.api_key else ""
            print(f"{info.id}  {status}  {info.engine}  {info.url}  {', '.join(info.models)}{key}")
    return 0


def stop_command(name: str) -> int:
    from lorastudio.serve.server import find_server, stop_all, stop_server

    if name == "all":
        stopped = stop_all()
        for path, _info, _live in stopped:
            print(f"stopped {path.name}")
        if not stopped:
            print("no server running")
        return 0
    path = find_server(name)
    info, live = stop_server(path)
    print(f"stopped {info.id}" if live else f"{info.id} was not running ({info.status})")
    return 0
