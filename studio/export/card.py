"""README.md model card stub for an export: base model, recipe, how to load it."""

from __future__ import annotations

from pathlib import Path

from lorastudio.recipe import Recipe


def _is_hub_id(name: str) -> bool:
    return (
        name.count("/") == 1 and not Path(name).expanduser().exists() and not name.startswith((".", "/", "~"))
    )


def model_card(
    recipe: Recipe,
    recipe_yaml: str,
    fmt: str,
    label: str,
    files: list[str],
    quant: str | None = None,
    steps: int | None = None,
    r: int | None = None,
    alpha: float | None = None,
    notes: list[str] | None = None,
) -> str:
    """The card; ``r``/``alpha`` come from the adapter's own config when it has one (else the recipe's)."""
    base = recipe.model.name
    base_text = "studio's offline tiny model" if base == "tiny" else f"`{base}`"
    front = ["---"]
    if _is_hub_id(base):
        front.append(f"base_model: {base}")
    front += [
        f"library_name: {'peft' if fmt == 'adapter' else 'transformers' if fmt == 'merged' else 'gguf'}",
        "tags:",
        "- studio",
        f"- {recipe.method.lower()}",
        f"- {fmt}",
        "---",
        "",
    ]
    what = {
        "adapter": "the LoRA adapter (load it on top of the base model)",
        "merged": "the base model with the LoRA adapter merged in (16-bit safetensors; no peft needed)",
        "gguf": f"a GGUF file ({quant}) for llama.cpp and Ollama, with an Ollama Modelfile",
    }[fmt]
    lines = [
        f"# {recipe.name}",
        "",
        f"Fine-tuned from {base_text} with the studio recipe `{recipe.name}` ({recipe.method}, r={r or recipe.lora.r}, "
        f"alpha={alpha or recipe.lora.alpha}{f', {steps} steps' if steps else ''}) on `{recipe.data.source}`.",
        "",
        f"This folder holds {what}. Exported from run `{label}`.",
        "",
        "## Use",
        "",
        "```",
    ]
    if fmt == "adapter":
        lines += [
            "from peft import AutoPeftModelForCausalLM",
            "from transformers import AutoTokenizer",
            "model = AutoPeftModelForCausalLM.from_pretrained('THIS_FOLDER')",
            "tokenizer = AutoTokenizer.from_pretrained('THIS_FOLDER')",
        ]
    elif fmt == "merged":
        lines += [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "model = AutoModelForCausalLM.from_pretrained('THIS_FOLDER')",
            "tokenizer = AutoTokenizer.from_pretrained('THIS_FOLDER')",
        ]
    else:
        gguf = next((f for f in files if f.endswith(".gguf")), "model.gguf")
        lines += [f"llama-cli -m {gguf} -cnv", "ollama create my-model -f Modelfile && ollama run my-model"]
    lines += [
        "```",
        "",
        "Or in studio: `studio chat THIS_FOLDER`." if fmt != "gguf" else "",
        "",
        *(f"Note: {note}." for note in notes or []),
        *chat_settings(recipe),
        "## Recipe",
        "",
        "```yaml",
        recipe_yaml.rstrip(),
        "```",
        "",
        "## Files",
        "",
    ]
    lines += [f"- `{f}`" for f in files]
    return "\n".join(front + lines) + "\n"


def chat_settings(recipe: Recipe) -> list[str]:
    """The card's section on the settings the run's samples and studio's Chat used (the Modelfile's PARAMETERs
    and the GGUF's sampling metadata say the same)."""
    from lorastudio.export.modelfile import sampling_parameters

    chat = recipe.chat
    lines = [
        "## Chat settings",
        "",
        "The run's samples and studio's Chat used these; use them to get the same replies:",
        "",
    ]
    names = {"num_predict": "max_new_tokens", "repeat_penalty": "repetition_penalty"}
    lines += [f"- {names.get(name, name)}: {value}" for name, value in sampling_parameters(chat)]
    if chat.greedy:
        lines.append("- greedy decoding (temperature 0)")
    system = chat.system_prompt or recipe.data.system_prompt
    if system:
        lines.append(f"- system prompt: {system!r}")
    return [*lines, ""]
