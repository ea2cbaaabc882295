"""The Ollama Modelfile renders prompts exactly as the chat template the run trained with.

Each shipped recipe's template (with the real tokenizer where one is here, else its family's) is turned into a
Modelfile TEMPLATE and SYSTEM, and conversations with and without a system message are rendered both ways:
by the Jinja template (what training and studio's Chat render) and by Go's own ``text/template`` driven as
Ollama's chat handler drives it (``tests/ollama_render/main.go``: SYSTEM first where the conversation has none,
consecutive roles merged, ``missingkey=zero``). They must agree character for character, the runtime's BOS
included.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lorastudio.export.modelfile import (
    CHECKED_CONVERSATIONS,
    TemplateNotExpressible,
    learn_pieces,
    modelfile_text,
    ollama_render,
    ollama_template,
    runtime_bos,
    tokenizer_render,
)
from lorastudio.models.templates import TEMPLATES
from lorastudio.recipe import ChatSection

HERE = Path(__file__).resolve().parent
Render = Callable[[list[dict[str, str]], bool], str]


@pytest.fixture(scope="session")
def go_render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[dict[str, Any]]], list[str]]:
    """Ollama's prompt rendering with Go's own text/template, built once a session (./test installs Go)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed (apt-get install golang-go): Ollama's template engine cannot be run")
    folder = tmp_path_factory.mktemp("ollama_render")
    shutil.copy(HERE / "ollama_render" / "main.go", folder / "main.go")
    (folder / "go.mod").write_text("module ollamarender\n\ngo 1.19\n")
    env = {
        "GOFLAGS": "-mod=mod",
        "GOPATH": str(folder / "gopath"),
        "GOCACHE": str(Path.home() / ".cache" / "go-build"),
    }
    import os

    subprocess.run([go, "build", "-o", "render", "."], cwd=folder, check=True, env={**os.environ, **env})

    def render(requests: list[dict[str, Any]]) -> list[str]:
        done = subprocess.run(
            [str(folder / "render")], input=json.dumps(requests), capture_output=True, text=True, check=True
        )
        out: list[str] = json.loads(done.stdout)
        return out

    return render


jinja_render = tokenizer_render


EXTRA = [
    [{"role": "user", "content": "Is it a question?"}, {"role": "user", "content": "Two in a row."}],
    [{"role": "system", "content": "Sys"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
     {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}, {"role": "user", "content": "q3"}],
]  # fmt: skip


def assert_same_as_go(render: Render, bos: str, system: str | None, go_render: Any) -> Any:
    prompts = ollama_template(render, system, bos)
    conversations = [*CHECKED_CONVERSATIONS, *EXTRA]
    got = go_render(
        [{"template": prompts.template, "system": prompts.system or "", "messages": c} for c in conversations]
    )
    for turns, go_text in zip(conversations, got, strict=True):
        merged = ollama_render(learn_pieces(render, bos)[0], turns, prompts.system)
        assert go_text == merged, "the Python twin differs from Go's text/template"
        asked = turns
        if prompts.system and turns[0]["role"] != "system":
            asked = [{"role": "system", "content": prompts.system}, *turns]
        if len(EXTRA[0]) == len(turns) and turns == EXTRA[0]:
            asked = [{"role": "user", "content": "Is it a question?\n\nTwo in a row."}]  # Ollama merges them
            if prompts.system:
                asked = [{"role": "system", "content": prompts.system}, *asked]
        assert bos + go_text == render(asked, True), turns
    return prompts


# Every shipped recipe's template: (recipe, template name or "own", tokenizer family used here).
SHIPPED = [
    ("llama3.2-1b-pirate", "llama-3.1", "llama3_1"),
    ("llama2-medical", "llama-2", "llama2"),
    ("falcon7b-guanaco", "guanaco", "llama3_1"),
    ("qwen-csv-concepts", "human-assistant", "qwen3"),
    ("qwen1.5-0.5b-qlora", "chatml", "qwen3"),
    ("qwen3-0.6b-tools", "own", "qwen3"),
    ("named alpaca", "alpaca", "llama2"),
    ("llama-3.1's own", "own", "llama3_1"),
]


@pytest.mark.parametrize(("recipe", "template", "family"), SHIPPED, ids=[s[0] for s in SHIPPED])
@pytest.mark.parametrize("system", [None, "You are a helpful assistant who always talks like a pirate."])
def test_modelfile_template_renders_as_the_chat_template(
    recipe: str, template: str, family: str, system: str | None, go_render: Any, studio_home: Path
) -> None:
    from conftest import npm_tokenizer

    tokenizer = npm_tokenizer(family)
    render = jinja_render(tokenizer, None if template == "own" else TEMPLATES[template].jinja)
    assert_same_as_go(render, runtime_bos(tokenizer, render), system, go_render)


def test_every_shipped_recipe_is_covered() -> None:
    from lorastudio import registry

    own_tokenizer = {"smollm2-pirate", "smollm2-pirate-dpo", "tiny-pirate", "tiny-pirate-grpo"}  # tests below
    shipped = {p.stem for p in (HERE.parent / "recipes").glob("*.yaml")}
    entries = {e.file.name: e.recipe for e in registry.load_all()}
    assert set(entries) >= shipped
    covered = {s[0] for s in SHIPPED if s[0] in shipped} | own_tokenizer

    def chat_of(name: str) -> tuple[str, str]:
        recipe = entries[name]
        assert recipe is not None, name
        return recipe.model.name, recipe.model.chat_template

    same_chat = {chat_of(name) for name in own_tokenizer}
    for name in sorted(shipped - covered):
        recipe = entries[name]
        assert recipe is not None, name
        # a variant of a covered recipe's model and template renders the same Modelfile; a reward model and a
        # vision-language model have none (their export is refused, test_reward_model.py / test_vision.py)
        assert (
            chat_of(name) in same_chat
            or recipe.train.method == "reward"
            or recipe.model.name in ("tiny-vision", "HuggingFaceTB/SmolVLM-256M-Instruct")
        ), f"{name}: no Modelfile test covers its model and chat template"


def test_tiny_model_template(tiny_tokenizer: Any, go_render: Any) -> None:
    render = jinja_render(tiny_tokenizer)
    bos = runtime_bos(tiny_tokenizer, render)
    assert bos == tiny_tokenizer.bos_token  # its template writes the BOS; the GGUF says the runtime adds it
    prompts = assert_same_as_go(render, bos, None, go_render)
    assert not prompts.template.startswith(bos)


def test_smollm2_default_system_prompt_becomes_the_modelfile_system(
    smollm2_dir: Path, go_render: Any
) -> None:
    """SmolLM2's template adds its own system prompt to a conversation without one: the Modelfile says it as
    SYSTEM (Ollama then puts it first), so an Ollama prompt is the one training rendered."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    render = jinja_render(tokenizer)
    prompts = assert_same_as_go(render, runtime_bos(tokenizer, render), None, go_render)
    assert prompts.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    own = assert_same_as_go(render, runtime_bos(tokenizer, render), "Talk like a pirate.", go_render)
    assert own.system == "Talk like a pirate."
    text = modelfile_text("m.gguf", prompts, ["<|im_end|>"], ChatSection(repetition_penalty=1.2))
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert "PARAMETER repeat_penalty 1.2" in text
    assert 'PARAMETER stop "<|im_end|>"' in text


def test_a_runtime_bos_is_not_rendered_twice(go_render: Any, studio_home: Path) -> None:
    """Llama-2 opens every user turn with <s>: the runtime adds the first one, the template the others."""
    from conftest import npm_tokenizer

    tokenizer = npm_tokenizer("llama2")
    render = jinja_render(tokenizer, TEMPLATES["llama-2"].jinja)
    bos = runtime_bos(tokenizer, render)
    assert bos == "<s>"
    prompts = assert_same_as_go(render, bos, "Sys", go_render)
    first = go_render([{"template": prompts.template, "system": "", "messages": CHECKED_CONVERSATIONS[2]}])[0]
    assert not first.startswith("<s>")
    assert first.count("<s>") == 1


def test_the_trim_caveat_is_said(studio_home: Path) -> None:
    from conftest import npm_tokenizer

    tokenizer = npm_tokenizer("llama3_1")
    trimmed = ollama_template(jinja_render(tokenizer, TEMPLATES["llama-3"].jinja), None, "<|begin_of_text|>")
    assert any("trims white space" in note for note in trimmed.notes)
    kept = ollama_template(jinja_render(tokenizer, TEMPLATES["chatml"].jinja), None, "")
    assert kept.notes == []


REFUSED = {
    "drops earlier turns": "{% for m in messages[-1:] %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
    "reorders turns": "{% for m in messages|reverse %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>",
    "numbers its turns": "{% for m in messages %}{{ loop.index }}. {{ m['content'] }}\n{% endfor %}",
    "changes the system prompt": "{% for m in messages %}{% if m['role'] == 'system' %}[{{ m['content'] | upper }}]"
    "{% else %}<{{ m['role'] }}>{{ m['content'] }}{% endif %}{% endfor %}",
}


@pytest.mark.parametrize("jinja", REFUSED.values(), ids=REFUSED.keys())
def test_a_template_ollama_cannot_say_is_refused(jinja: str, studio_home: Path) -> None:
    from conftest import npm_tokenizer

    tokenizer = npm_tokenizer("qwen3")
    with pytest.raises(TemplateNotExpressible) as info:
        ollama_template(jinja_render(tokenizer, jinja), "Sys", "")
    assert "render" in str(info.value)


def test_literal_braces_and_quotes_survive(go_render: Any, studio_home: Path) -> None:
    """Template text holding '{{' or triple quotes is written as Go string literals, not as template code."""
    from conftest import npm_tokenizer

    tokenizer = npm_tokenizer("qwen3")
    jinja = (
        "{% for m in messages %}{{ '{{' + m['role'] + '}}\"\"\"' + m['content'] + '\"' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '{{assistant}}' }}{% endif %}"
    )
    prompts = assert_same_as_go(jinja_render(tokenizer, jinja), "", None, go_render)
    assert '"""' not in prompts.template
