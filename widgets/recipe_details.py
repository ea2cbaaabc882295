"""The picker's details pane: what a recipe will do, and roughly what it will cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from lorastudio.paths import display_path
from lorastudio.recipecards import MEMORY_ROW, RecipeCard

if TYPE_CHECKING:
    from lorastudio.recipe import Recipe
    from lorastudio.registry import RecipeEntry


class RecipeDetails(Static):
    """Model, data, format, LoRA, steps and an estimated memory figure for one recipe."""

    on_gpu = True
    """Whether training runs on a GPU here (the screen asks NVML off the UI thread): VRAM, else host RAM."""

    def show(self, card: RecipeCard | None) -> None:
        if card is None:
            self.update(Text("No recipe matches the filter.", style="dim"))
            return
        if card.title is None:
            self.update(Text(f"{card.file.path}\n\n{card.error}", style="bold red"))
            return
        from lorastudio.models.estimate import memory_label

        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, value in card.rows:
            table.add_row(memory_label(self.on_gpu) if key == MEMORY_ROW else key, Text(value))
        self.update(table)  # a description or path is shown as written, never read as markup


def card_of(entry: RecipeEntry) -> RecipeCard:
    """What the list and this pane show of ``entry`` (off the UI thread: it estimates memory)."""
    if entry.recipe is None:
        return RecipeCard(entry.file, None, "", "", (), entry.error or "invalid recipe", ())
    from lorastudio.models.estimate import estimate_vram_gb

    r = entry.recipe
    steps = f"{r.train.max_steps} steps" if r.train.max_steps else f"{r.train.epochs:g} epochs"
    vram = estimate_vram_gb(r)
    targets = (
        r.lora.target_modules if isinstance(r.lora.target_modules, str) else ", ".join(r.lora.target_modules)
    )
    if r.train.tuning != "lora":  # no adapter: what trains is on the method row
        targets = (
            "every weight (no adapter)" if r.train.tuning == "full" else "only what the method row names"
        )
    quant = (
        f"4-bit {r.model.quant_type}{' + double quant' if r.model.double_quant else ''}"
        if (r.model.load_in_4bit)
        else "16-bit (fp32 on CPU)"
    )
    rows = [
        ("recipe", r.name),
        ("", r.description),
        ("model", r.model.name + (" (built offline)" if r.model.name == "tiny" else "")),
        ("weights", quant),
        ("template", r.model.chat_template),
        ("max length", str(r.model.max_seq_length)),
        (
            "data",
            display_path(r.data.source)
            if "/" in r.data.source and r.data.source.startswith("/")
            else r.data.source,
        ),
        ("format", r.data.format + (f"  columns {r.data.columns}" if r.data.columns else "")),
        ("method", method_row(r)),
        ("targets", targets),
        (
            "train",
            f"{steps}, batch {r.train.batch_size} x {r.train.gradient_accumulation}, "
            f"lr {r.train.learning_rate:g}, {r.train.optimizer}",
        ),
        (
            "loss on",
            {"responses": "assistant replies only", "last_response": "the last assistant reply"}.get(
                r.train.train_on, "all tokens"
            ),
        ),
        ("packing", "yes" if r.train.packing else "no"),
        (
            MEMORY_ROW,
            f"~{vram:g} GB" if vram is not None else "unknown (set model.params_billion)",
        ),
        ("tags", ", ".join(r.tags) or "-"),
        ("file", f"{entry.file.origin}: {display_path(entry.file.path)}"),
    ]
    return RecipeCard(entry.file, r.name, r.model.name, r.description, tuple(r.tags), None, tuple(rows))


def method_row(r: Recipe) -> str:
    """What trains and how: ``DoRA  r=16 alpha=32 dropout=0 init pissa``, ``Freeze (last 2 layers: mlp)``,
    ``Full+PRETRAIN  embeddings lr 2e-05``: the adapter's settings only where there is an adapter."""
    t, lora = r.train, r.lora
    if t.tuning == "freeze":
        modules = ", ".join(t.freeze_trainable_modules or [])
        n = t.freeze_trainable_layers
        where = (
            f"last {n} layer{'s' if n != 1 else ''}" + (f": {modules}" if modules else "") if n else modules
        )
        head, rest = r.method.partition("+")[::2]
        parts = [f"{head} ({where})" + (f"+{rest}" if rest else "")]
    elif t.tuning == "full":
        parts = [r.method]
    else:
        parts = [f"{r.method}  r={lora.r} alpha={lora.alpha} dropout={lora.dropout:g}"]
        parts += ["rslora"] if lora.use_rslora else []
        parts += [f"init {lora.init}"] if lora.init != "default" else []
        parts += [f"LoRA+ B lr x{lora.plus_lr_ratio:g}"] if lora.plus_lr_ratio else []
        parts += ["rank/alpha patterns"] if lora.rank_pattern or lora.alpha_pattern else []
        parts += [f"saves {', '.join(lora.modules_to_save)}"] if lora.modules_to_save else []
    if t.embedding_learning_rate is not None:
        parts.append(f"embeddings lr {t.embedding_learning_rate:g}")
    return ", ".join(parts)
