"""The Launch sheet: the resolved recipe's important fields as a form, the memory estimate, then Enter to train.

``t`` on Recipes or Preview opens it; nothing starts until Enter here. Every edit is validated by the
recipe model at once, with the message beside the field. Ctrl+S saves the edits as a user recipe that
``extends`` the original; ``e`` edits the whole recipe as YAML in ``$VISUAL``/``$EDITOR``.
"""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, Label, Static, Switch

from lorastudio.recipe import Recipe
from lorastudio.screens.launch_fields import (
    BY_PATH,
    FIELDS,
    FREEZE_FIELDS,
    FieldSpec,
    applies,
    diff,
    format_value,
    get_path,
    method_fields,
    parse_value,
    set_path,
    validate,
    with_method_defaults,
)
from lorastudio.screens.navigate import Runs, Train, go
from lorastudio.screens.worker_failures import HandlesWorkerFailures
from lorastudio.widgets.form_switch import FormSwitch
from lorastudio.widgets.text_input import TextInput
from lorastudio.widgets.title_header import TitleHeader

IDENTITY = ("name", "description", "extends")


def _key(spec: FieldSpec) -> str:
    return spec.path.replace(".", "-").replace("_", "-")


@dataclass
class EstimateReady(Message):
    """The memory estimate and what the machine has free, as one line; a newer one replaces a pending one."""

    text: Text
    fits: bool | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EstimateReady)


def sweep_values(spec: FieldSpec, text: str) -> list[str]:
    """The values of a field typed as ``a, b, c`` (a sweep), or [] for one value; list fields never sweep."""
    if spec.kind in ("list", "optional_list", "bool") or spec.path == "data.source":
        return []
    from lorastudio.train.launch.sweep import split_values

    values = [v for v in split_values(text) if v]
    return values if len(values) > 1 else []


class LaunchScreen(HandlesWorkerFailures, Screen[None]):
    """Edit, check the memory estimate, then Enter to start exactly one run."""

    BINDINGS = [
        Binding("enter", "launch", "Launch", id="launch.start"),
        Binding("escape", "back", "Back", id="launch.back"),
        Binding("ctrl+s", "save", "Save recipe", id="launch.save"),
        Binding("e", "edit", "Edit YAML", id="launch.edit"),
        Binding("ctrl+o", "browse", "Data file", id="launch.browse"),
    ]

    def __init__(self, recipe: Recipe, base: str | None = None) -> None:
        super().__init__()
        self.recipe = recipe
        self.base = base or recipe.name
        self.original: dict[str, Any] = with_method_defaults(recipe, recipe.model_dump(mode="json"))
        self.data: dict[str, Any] = copy.deepcopy(self.original)
        self.method_fields = method_fields(self.data)  # dpo/kto/orpo/grpo: its section's fields
        self.fields = FIELDS + self.method_fields
        self.by_path = {f.path: f for f in self.fields}
        self.current: Recipe | None = recipe
        self.errors: dict[str, str] = {}
        self.started = False
        self.saved: Path | None = None
        self.estimate_text: Text | None = None
        self.fits: bool | None = None
        self._draft_text: str | None = None  # an invalid $EDITOR edit, reopened by the next `e`
        self.sweep_axes: dict[str, list[str]] = {}  # field path -> values typed as a, b, c (a sweep)
        self.epochs_note = ""  # beside epochs: "max_steps 40 wins: 2.96 epochs"
        self.epochs_counted = False  # the first note is in (tests and snapshots wait for it)
        self._train_rows: dict[tuple[Any, ...], int | None] = {}  # by data source and split: counted once

    def compose(self) -> ComposeResult:
        yield TitleHeader()
        yield Label(f"Launch · {self.recipe.name}", id="launch-title", classes="title")
        yield Static("estimating memory…", id="launch-estimate")
        yield Label(
            "Enter launches · Tab moves · Ctrl+S saves as a user recipe · e edits YAML",
            id="launch-status",
            classes="muted",
        )
        if not self.recipe.train.supervised:  # the method and, for GRPO, the reward functions and their files
            yield Label(_method_line(self.recipe), id="launch-method", classes="muted")
        with VerticalScroll(id="launch-form", classes="panel"):
            for spec in self.fields:
                if spec is (self.method_fields or (None,))[0]:
                    yield Label(
                        f"{self.recipe.train.method} settings ({self.recipe.train.method}: section)",
                        classes="launch-section muted",
                    )
                row = Horizontal(classes="launch-row", id=f"row-{_key(spec)}")
                row.display = applies(spec, self.data)  # e.g. no LoRA fields for full tuning
                with row:
                    yield Label(spec.label, classes="launch-label")
                    value = get_path(self.data, spec.path)
                    if spec.kind == "bool":
                        yield FormSwitch(value=bool(value), id=f"f-{_key(spec)}", classes="launch-switch")
                        # In words too: the switch is only colours, which NO_COLOR and a text capture drop.
                        yield Label(_on_off(bool(value)), id=f"v-{_key(spec)}", classes="launch-switch-value")
                    else:
                        box = TextInput(
                            _format(spec, value),
                            id=f"f-{_key(spec)}",
                            compact=True,
                            classes="launch-input",
                            suggester=SuggestFromList(spec.choices) if spec.choices else None,
                        )
                        box.tooltip = box.value or None  # the whole value, should a long path still be cut
                        yield box
                    yield Label("", id=f"e-{_key(spec)}", classes="launch-error")
        yield Footer()

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#launch-form"))  # keys are commands until Tab moves into a field
        self.estimate(self.recipe)
        self.count_epochs(self.recipe)

    # -- editing ---------------------------------------------------------------------------------
    def _spec_of(self, widget_id: str | None) -> FieldSpec | None:
        return next((s for s in self.fields if f"f-{_key(s)}" == widget_id), None)

    @on(Input.Changed, ".launch-input")
    def _input_changed(self, event: Input.Changed) -> None:
        spec = self._spec_of(event.input.id)
        event.input.tooltip = event.value or None
        if spec is not None:
            values = sweep_values(spec, event.value)  # a sweep: the form checks the first, Enter checks all
            swept = self.sweep_axes.pop(spec.path, None)
            if values:
                self.sweep_axes[spec.path] = values
                self.sweep_axes = {
                    f.path: self.sweep_axes[f.path] for f in self.fields if f.path in self.sweep_axes
                }
            self.set_field(spec.path, _parse(spec, values[0] if values else event.value))
            if values or swept:
                self.revalidate()

    @on(Switch.Changed, ".launch-switch")
    def _switch_changed(self, event: Switch.Changed) -> None:
        spec = self._spec_of(event.switch.id)
        if spec is not None:
            self.query_one(f"#v-{_key(spec)}", Label).update(_on_off(event.value))
            self.set_field(spec.path, event.value)

    def set_field(self, path: str, value: Any) -> None:
        if get_path(self.data, path) == value and not self.errors:
            return
        set_path(self.data, path, value)
        if path == "train.tuning":
            self._sync_freeze_fields()
        self.revalidate()

    def _sync_freeze_fields(self) -> None:
        """The freeze fields hold what their boxes say while they apply and nothing while hidden (the recipe
        refuses them with another tuning); the typed text stays in the box for the next switch to freeze."""
        for path in FREEZE_FIELDS:
            spec = self.by_path[path]
            shown = applies(spec, self.data)
            set_path(
                self.data,
                path,
                _parse(spec, self.query_one(f"#f-{_key(spec)}", Input).value) if shown else None,
            )

    def visible_fields(self) -> tuple[FieldSpec, ...]:
        """The fields that apply to the recipe as it is edited (the others' rows are hidden)."""
        return tuple(spec for spec in self.fields if applies(spec, self.data))

    def revalidate(self) -> None:
        recipe, errors = validate(self.data, self.visible_fields())
        self.current, self.errors = recipe, errors
        for spec in self.fields:
            label = self.query_one(f"#e-{_key(spec)}", Label)
            message = errors.get(spec.path, "")
            label.update(escape(message or (self.epochs_note if spec.path == "train.epochs" else "")))
            label.set_class(bool(message), "error")
        status = self.query_one("#launch-status", Label)
        if "" in errors:
            status.update(escape(errors[""]))
            status.set_class(True, "error")
        elif errors:
            status.update(f"fix {len(errors)} field{'s' if len(errors) > 1 else ''} before launching")
            status.set_class(True, "error")
        else:
            status.set_class(False, "error")
            status.update(self._changes_line())
        self._show_sweep_axes()
        if recipe is not None:
            self.data = recipe.model_dump(mode="json")  # normalised (e.g. "1e-4" becomes 0.0001)
        for spec in self.fields:
            self.query_one(f"#row-{_key(spec)}").display = applies(spec, self.data)
        if recipe is not None:
            self.estimate(recipe)
            self.count_epochs(recipe)

    def _show_sweep_axes(self) -> None:
        """Beside each swept field, how many values; in the status line, how many runs Enter starts."""
        if not self.sweep_axes:
            return
        runs = 1
        for path, values in self.sweep_axes.items():
            runs *= len(values)
            if path not in self.errors:
                label = self.query_one(f"#e-{_key(self.by_path[path])}", Label)
                label.update(f"sweep: {len(values)} values")
        if not self.errors:
            self.query_one("#launch-status", Label).update(
                f"sweep of {runs} runs over {', '.join(self.sweep_axes)} · Enter checks each value, starts it"
            )

    def _launch_sweep(self) -> None:
        from lorastudio.errors import StudioError
        from lorastudio.train.launch.sweep import Axis, plan_from_data, start_sweep

        try:
            plan = plan_from_data(self.data, [Axis(path, values) for path, values in self.sweep_axes.items()])
        except StudioError as exc:
            self.notify(str(exc), title="sweep not started", severity="error")
            return
        from lorastudio.screens.confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if not yes:
                return
            try:
                start_sweep(plan)
            except StudioError as exc:
                self.notify(str(exc), title="sweep not started", severity="error")
                return
            self.started = True
            self.app.pop_screen()
            self.app.notify(f"sweep {plan.name}: {len(plan.points)} runs queued, one training at a time")
            go(self.app, Runs())

        self.app.push_screen(
            ConfirmScreen(
                f"Start sweep {plan.name}?\n{len(plan.points)} runs over "
                f"{', '.join(plan.keys)}, queued one at a time."
            ),
            answer,
        )

    def _changes(self) -> dict[str, Any]:
        return {k: v for k, v in diff(self.original, self.data).items() if k not in IDENTITY}

    def _changes_line(self) -> str:
        from lorastudio.screens.launch_fields import changed_paths

        paths = changed_paths(self._changes())
        return (
            ("changed: " + ", ".join(paths)) if paths else "no changes · Enter launches the recipe as it is"
        )

    def _refill(self) -> None:
        """Show ``self.data`` in every field (after an $EDITOR edit)."""
        for spec in self.fields:
            value = get_path(self.data, spec.path)
            if spec.kind == "bool":
                self.query_one(f"#f-{_key(spec)}", Switch).value = bool(value)
            else:
                box = self.query_one(f"#f-{_key(spec)}", Input)
                if _parse(spec, box.value) != value:
                    box.value = _format(spec, value)

    # -- the estimate ----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="launch-estimate", exit_on_error=False)
    def estimate(self, recipe: Recipe) -> None:
        from lorastudio.screens.launch_memory import describe

        text, fits = describe(recipe)
        self.post_message(EstimateReady(text, fits))

    @work(thread=True, exclusive=True, group="launch-epochs", exit_on_error=False)
    def count_epochs(self, recipe: Recipe) -> None:
        """Whether max_steps wins over epochs, and how many epochs it makes (the data's rows counted once)."""
        from lorastudio.data.datasource import max_steps_note, train_rows_count

        data = recipe.data
        key = (data.source, data.split, data.limit, data.eval_split, data.eval_fraction)
        if recipe.train.max_steps is not None and key not in self._train_rows:
            self._train_rows[key] = train_rows_count(data)
        note = max_steps_note(recipe, self._train_rows.get(key))
        self.app.call_from_thread(self._show_epochs_note, note)

    def _show_epochs_note(self, note: str) -> None:
        self.epochs_note, self.epochs_counted = note, True
        if self.is_attached and "train.epochs" not in self.errors and "train.epochs" not in self.sweep_axes:
            self.query_one(f"#e-{_key(BY_PATH['train.epochs'])}", Label).update(escape(note))

    def on_estimate_ready(self, message: EstimateReady) -> None:
        self.estimate_text, self.fits = message.text, message.fits
        self.query_one("#launch-estimate", Static).update(message.text)

    # -- actions ---------------------------------------------------------------------------------
    def action_launch(self) -> None:
        if self.started:
            return
        if self.sweep_axes and self.current is not None:
            self._launch_sweep()
            return
        if self.current is None:
            self.notify(
                "the recipe has errors; fix the fields marked in red", title="not launched", severity="error"
            )
            return
        recipe = self._resolved_start(self.current) if self.current.model.adapter else self.current
        if recipe is None:
            return
        self.started = True
        self.app.pop_screen()
        go(self.app, Train(recipe))

    def _resolved_start(self, recipe: Recipe) -> Recipe | None:
        """The recipe with ``model.adapter`` as the adapter folder it names now (as ``studio train --from``
        records it), so a later run of that recipe does not change what this one started from; None, with
        the message under the field, when it names no run or adapter."""
        from lorastudio.errors import StudioError
        from lorastudio.train.trainer.methods import resolve_start_adapter

        try:
            folder = resolve_start_adapter(str(recipe.model.adapter))
        except StudioError as exc:
            self.query_one(f"#e-{_key(BY_PATH['model.adapter'])}", Label).update(escape(str(exc)))
            self.notify(str(exc), title="not launched", severity="error")
            return None
        return recipe.model_copy(update={"model": recipe.model.model_copy(update={"adapter": str(folder)})})

    @on(Input.Submitted, ".launch-input")
    def _submitted(self, event: Input.Submitted) -> None:
        self.action_launch()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_save(self) -> None:
        from lorastudio import registry
        from lorastudio.errors import StudioError
        from lorastudio.paths import display_path

        if self.current is None:
            self.notify("fix the fields marked in red first", title="not saved", severity="error")
            return
        changes = self._changes()
        if not changes:
            self.notify("nothing changed: the recipe is already saved as it is", title="not saved")
            return
        try:
            path = registry.save_user_recipe(self.base, changes, full=self.data)
            registry.load(str(path))  # it must load on its own, as `studio validate` will load it
        except StudioError as exc:
            self.notify(str(exc), title="not saved", severity="error")
            return
        self.saved = path
        status = self.query_one("#launch-status", Label)
        status.set_class(False, "error")
        status.update(escape(f"saved {display_path(path)} · studio train {path.stem}"))
        self.notify(f"saved {display_path(path)}", title="recipe saved")

    def action_edit(self) -> None:
        from textual.app import SuspendNotSupported

        from lorastudio import registry
        from lorastudio.errors import StudioError
        from lorastudio.paths import cache_dir

        draft = cache_dir() / "launch" / f"{self.recipe.name}.yaml"
        try:
            draft.parent.mkdir(parents=True, exist_ok=True)
            if self._draft_text is not None:
                text = self._draft_text
            else:
                text = (
                    registry.dump(self.current) if self.current is not None else registry.dump_data(self.data)
                )
            draft.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"{draft}: {exc.strerror or exc}", title="cannot edit", severity="error")
            return
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        command = [*shlex.split(editor), str(draft)]
        try:
            try:
                with self.app.suspend():
                    subprocess.run(command, check=False)
            except SuspendNotSupported:  # a headless app (tests): run it without the terminal
                subprocess.run(command, check=False, stdin=subprocess.DEVNULL, capture_output=True)
        except OSError as exc:
            self.notify(
                f"cannot run {editor!r}: {exc.strerror or exc} (set $VISUAL or $EDITOR)",
                title="cannot edit",
                severity="error",
            )
            return
        text = draft.read_text(encoding="utf-8")
        status = self.query_one("#launch-status", Label)
        try:
            recipe = registry.validate_data(registry.parse_text(text, draft), draft, text)
        except StudioError as exc:
            self._draft_text = text  # keep the edit; the next `e` reopens it
            status.update(escape(f"the edit is not valid (kept; press e to fix it): {exc}"))
            status.set_class(True, "error")
            self.notify(str(exc), title="invalid recipe", severity="error", timeout=10)
            return
        self._draft_text = None
        self.data = recipe.model_dump(mode="json")
        self._refill()
        self.revalidate()

    def action_browse(self) -> None:
        from lorastudio.screens.file_picker import FilePickerScreen

        source = Path(str(get_path(self.data, "data.source") or ""))
        start = source.parent if source.is_absolute() and source.parent.is_dir() else Path.cwd()

        def chosen(path: str | None) -> None:
            if path:
                self.query_one(f"#f-{_key(BY_PATH['data.source'])}", Input).value = path

        self.app.push_screen(FilePickerScreen(start), chosen)


def _method_line(recipe: Recipe) -> str:
    from lorastudio.train.trainer.rewards import describe

    line = f"method {recipe.train.method}"
    if recipe.model.adapter:
        line += f" · from {recipe.model.adapter}"
    if recipe.grpo is not None:
        line += " · rewards: " + ", ".join(
            f"{describe(r)} x{r.weight:g}" + (f" ({r.python.rpartition(':')[0]})" if r.python else "")
            for r in recipe.grpo.rewards
        )
    return line


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _format(spec: FieldSpec, value: Any) -> str:
    if spec.path == "data.source" and isinstance(value, str) and Path(value).is_absolute():
        from lorastudio.paths import display_path

        return display_path(value)  # recipes/… or ~/…: short, and the same on every machine
    return format_value(spec, value)


def _parse(spec: FieldSpec, text: str) -> Any:
    value = parse_value(spec, text)
    if spec.path == "data.source" and isinstance(value, str) and value:
        from lorastudio.paths import package_recipes_dir

        if value.startswith("recipes/") and (package_recipes_dir() / value[len("recipes/") :]).exists():
            return str(package_recipes_dir() / value[len("recipes/") :])
        local = Path(value).expanduser()
        if local.exists():  # a local file, typed relative to where studio runs
            return str(local.resolve())
    return value
