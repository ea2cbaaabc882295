"""A GGUF export in llama.cpp's own runtime answers as studio's Chat does (issue 45).

    python benchmarks/gguf_llamacpp.py --run RUN            # export RUN (merged + GGUF), then compare
    python benchmarks/gguf_llamacpp.py --recipe tiny-pirate # train a short run of the recipe first
    python benchmarks/gguf_llamacpp.py --run RUN --quant f16 --questions 5 --tokens 24

Needs llama-cpp-python (``pip install llama-cpp-python``: it builds llama.cpp from source, about eight minutes
on two cores), which is why this is a script and not a test in CI. For each held-out question it prints:

- studio: ``studio chat --greedy`` on the merged export (transformers);
- llama.cpp chat: the GGUF through llama.cpp's chat completion, which renders the template stored in the GGUF;
- Ollama prompt: the GGUF on the very prompt the Modelfile's TEMPLATE and SYSTEM give (rendered by the
  template's Python twin, which tests/test_modelfile.py holds equal to Go's text/template), greedy;

and the share of questions whose llama.cpp replies start (first ``--words`` words) as studio's does, the same
for the pirate style rate of each. The GGUF's own sampling defaults are set aside: every side decodes greedily.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def short_run(recipe: str, overrides: list[str]) -> Path:
    from lorastudio import registry
    from lorastudio.train.launch.runs import create_run

    run_dir = create_run(registry.load(recipe, overrides))
    done = subprocess.run(
        [sys.executable, "-m", "lorastudio.worker", str(run_dir)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"training failed:\n{done.stdout}{done.stderr}")
    return run_dir


def export(run: str, fmt: str, quant: str) -> Path:
    from lorastudio.export.exporter import ExportRequest
    from lorastudio.export.exporter import export as do_export

    result = do_export(ExportRequest(run, fmt, quant=quant, force=True))
    for note in result.notes:
        print(f"note: {note}")
    return result.out


def words(text: str, n: int) -> list[str]:
    return text.split()[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="an existing run (name or path)")
    parser.add_argument("--recipe", default="tiny-pirate", help="trained first when --run is not given")
    parser.add_argument("--quant", default="q8_0")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per reply")
    parser.add_argument("--words", type=int, default=4, help="leading words that must agree")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for the training run")
    args = parser.parse_args()
    try:
        from llama_cpp import Llama
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python (builds llama.cpp, ~8 min)")
    import torch

    from lorastudio.chat.engine import engine_for, with_overrides
    from lorastudio.demo.piratedata import HELD_OUT, is_pirate
    from lorastudio.export.modelfile import learn_pieces, ollama_render, runtime_bos, tokenizer_render

    torch.set_num_threads(2)
    run = args.run or str(short_run(args.recipe, args.overrides))
    started = time.monotonic()
    merged = export(run, "merged", "f16")
    gguf_dir = export(run, "gguf", args.quant)
    print(f"exports: {merged} and {gguf_dir} in {time.monotonic() - started:.1f} s")
    gguf = next(gguf_dir.glob("*.gguf"))

    engine = engine_for(str(merged))
    engine.load()
    sampling = with_overrides(
        engine.recipe.chat, greedy=True, max_new_tokens=args.tokens, repetition_penalty=1.0
    )
    system = engine.recipe.chat.system_prompt or engine.recipe.data.system_prompt
    tokenizer = engine.tokenizer

    render = tokenizer_render(tokenizer)

    modelfile = (gguf_dir / "Modelfile").read_text() if (gguf_dir / "Modelfile").exists() else ""
    ollama_system = None
    if 'SYSTEM """' in modelfile:
        ollama_system = modelfile.split('SYSTEM """', 1)[1].split('"""', 1)[0]
    bos = runtime_bos(tokenizer, render)
    pieces = learn_pieces(render, bos)[0]

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=2, verbose=False, seed=0)
    rows: list[dict[str, Any]] = []
    for question in HELD_OUT[: args.questions]:
        messages = [{"role": "user", "content": question}]
        asked = ([{"role": "system", "content": system}] if system else []) + messages
        ours = engine.generate(asked, sampling).text
        chat = llm.create_chat_completion(
            messages=asked, temperature=0.0, top_k=1, max_tokens=args.tokens, repeat_penalty=1.0
        )["choices"][0]["message"]["content"]
        prompt = ollama_render(pieces, messages, ollama_system)
        ids = llm.tokenize(prompt.encode(), add_bos=bool(bos), special=True)
        raw = llm.create_completion(ids, temperature=0.0, top_k=1, max_tokens=args.tokens, repeat_penalty=1.0)
        ollama = raw["choices"][0]["text"]
        rows.append({"question": question, "studio": ours, "llama_cpp_chat": chat, "ollama_prompt": ollama})
        print(json.dumps(rows[-1], ensure_ascii=False))

    n = len(rows)
    for side in ("llama_cpp_chat", "ollama_prompt"):
        same = sum(words(r[side], args.words) == words(r["studio"], args.words) for r in rows)
        print(f"{side}: {same}/{n} replies start as studio's (first {args.words} words)")
    for side in ("studio", "llama_cpp_chat", "ollama_prompt"):
        print(f"{side}: pirate style {sum(is_pirate(r[side]) for r in rows)}/{n}")


if __name__ == "__main__":
    main()
