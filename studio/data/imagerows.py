"""Rows with images, and the vision branch of the one encode path (:class:`VisionEncoder`).

Two row shapes are read, as LLaMA-Factory and TRL accept them:

- ``messages`` whose contents are lists of parts: ``{"type": "image", "image": "cat.png"}`` and
  ``{"type": "text", "text": "..."}``;
- an ``images: [...]`` column beside ``messages`` (or ShareGPT ``conversations``) whose text holds one
  ``<image>`` placeholder per image (no placeholder at all: the images open the first user turn).

Image paths are relative to the data file. A missing or unreadable image is refused (a DataError naming the row
and the file), never skipped: a vision data set with holes trains something else than was asked.

The conversation is rendered and its assistant spans located exactly as text rows are (``Encoder.locate``), with
each image a part the chat template renders as the processor's placeholder; the processor then expands each
placeholder into the model's image tokens and reports where (``return_text_replacement_offsets``), so the located
spans move with the text and every image token stays masked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.data.encode import (
    IGNORE_INDEX,
    NOTHING_TRAINED,
    Encoded,
    Encoder,
    _mask_outside,
    resolve_format,
)
from lorastudio.data.formats import SHAREGPT_ROLES, Example, SkipRow
from lorastudio.errors import DataError
from lorastudio.recipe import Recipe

IMAGE_PLACEHOLDER = "<image>"
"""How a text turn marks where an image of the ``images`` column goes."""
TOO_LONG = "image tokens beyond max_seq_length"


@dataclass(frozen=True)
class ImageSpan:
    """Where one image's tokens are in a sample, and the image's own size (what the Preview shows)."""

    start: int
    end: int
    width: int
    height: int

    def label(self, number: int) -> str:
        return f"[image {number}: {self.width}x{self.height}]"


@dataclass(frozen=True)
class VisionEncoded(Encoded):
    """An encoded sample with images: their files (in order) and where their tokens are."""

    images: tuple[str, ...] = ()
    image_spans: tuple[ImageSpan, ...] = ()


def has_image_parts(row: Mapping[str, Any]) -> bool:
    """Whether a row carries images (an image part in a message, or a non-empty ``images`` column)."""
    if row.get("images"):
        return True
    for key in ("messages", "conversations"):
        turns = row.get(key)
        if isinstance(turns, Sequence) and not isinstance(turns, str):
            for turn in turns:
                content = turn.get("content") if isinstance(turn, Mapping) else None
                if isinstance(content, list) and any(_is_image_part(p) for p in content):
                    return True
    return False


def _is_image_part(part: Any) -> bool:
    return isinstance(part, Mapping) and part.get("type") == "image"


def open_image(path: Path, where: str) -> Any:
    """The image as RGB; a DataError naming ``where`` (the row) and the file when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{where}: image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{where}: image {path} cannot be read ({exc})") from None


class VisionEncoder(Encoder):
    """The encoder for a vision-language model: text rendering and masking as :class:`Encoder`, images through
    the model's processor."""

    vision = True

    def __init__(self, processor: Any, recipe: Recipe, fmt: str, base_dir: Path, origin: str) -> None:
        tokenizer = processor.tokenizer
        if not getattr(tokenizer, "chat_template", None) and getattr(processor, "chat_template", None):
            tokenizer.chat_template = processor.chat_template  # the processor keeps the VLM's template
        super().__init__(tokenizer, recipe, fmt)
        self.processor = processor
        self.base_dir = base_dir
        self.origin = origin
        self.image_token: str = getattr(processor, "image_token", IMAGE_PLACEHOLDER)

    # -- rows ----------------------------------------------------------------------------------
    def vision_example(self, row: Mapping[str, Any], where: str) -> tuple[Example, list[Path]]:
        """The row as turns (user contents as lists of parts) and its image files, in order."""
        key = "conversations" if self.format == "sharegpt" else "messages"
        raw = row.get(self.columns.get(key, key))
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise SkipRow(f"{key} is not a list")
        role_key, content_key = ("from", "value") if key == "conversations" else ("role", "content")
        column = row.get(self.columns.get("images", "images")) or []
        if isinstance(column, str):
            column = [column]
        images: list[Path] = []
        pending = [self._path(p, where) for p in column]
        placeholders = sum(
            str(t.get(content_key)).count(IMAGE_PLACEHOLDER)
            for t in raw
            if isinstance(t, Mapping) and isinstance(t.get(content_key), str)
        )
        if pending and placeholders and placeholders != len(pending):
            raise DataError(
                f"{where}: {len(pending)} images in the images column but {placeholders} {IMAGE_PLACEHOLDER} "
                "placeholders in the text"
            )
        turns: list[dict[str, Any]] = []
        for item in raw:
            if not isinstance(item, Mapping):
                raise SkipRow(f"{key} has a turn that is not a mapping")
            role = SHAREGPT_ROLES.get(str(item.get(role_key, "")).lower())
            if role is None:
                raise SkipRow(f"unknown role {item.get(role_key)!r}")
            content = item.get(content_key)
            if isinstance(content, list):
                parts: list[dict[str, Any]] = []
                for part in content:
                    if _is_image_part(part):
                        source = part.get("image") or part.get("path") or part.get("url")
                        if not isinstance(source, str):
                            raise DataError(f'{where}: an image part names no file (give it "image": PATH)')
                        images.append(self._path(source, where))
                        parts.append({"type": "image"})
                    elif isinstance(part, Mapping) and part.get("type") == "text":
                        parts.append({"type": "text", "text": str(part.get("text", ""))})
                if role == "assistant":  # replies are text: the encoder marks them as strings
                    turns.append({"role": role, "content": "".join(p.get("text", "") for p in parts)})
                else:
                    turns.append({"role": role, "content": parts})
                continue
            if not isinstance(content, str) or not content.strip():
                raise SkipRow(f"empty {role} content")
            if role != "assistant" and pending and IMAGE_PLACEHOLDER in content:
                pieces = content.split(IMAGE_PLACEHOLDER)
                parts = [{"type": "text", "text": pieces[0]}] if pieces[0].strip() else []
                for text in pieces[1:]:
                    images.append(pending.pop(0))
                    parts.append({"type": "image"})
                    if text.strip():
                        parts.append({"type": "text", "text": text})
                turns.append({"role": role, "content": parts})
            elif role != "assistant":
                turns.append({"role": role, "content": [{"type": "text", "text": content}]})
            else:
                turns.append({"role": role, "content": content})
        if pending:  # no placeholders: the images open the first user turn, as TRL does
            first = next((t for t in turns if t["role"] == "user"), None)
            if first is None:
                raise SkipRow("no user turn for the images")
            first["content"] = [{"type": "image"} for _ in pending] + first["content"]
            images = pending + images
        if not any(t["role"] == "assistant" for t in turns):
            raise SkipRow("no assistant turn")
        if self.system_prompt and turns[0]["role"] != "system":
            turns.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return Example(turns=tuple(turns)), images

    def _path(self, name: str, where: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    # -- rendering -----------------------------------------------------------------------------
    def messages(self, turns: Sequence[Mapping[str, Any]], marked: bool = False) -> list[dict[str, Any]]:
        """As :meth:`Encoder.messages`, with every content a list of parts (VLM templates iterate over them)."""
        out = super().messages(turns, marked)
        for message in out:
            if isinstance(message["content"], str):
                message["content"] = [{"type": "text", "text": message["content"]}]
        return out

    # -- encoding ------------------------------------------------------------------------------
    def encode_row(self, row: Mapping[str, Any], index: int | None = None) -> VisionEncoded:
        where = f"{self.origin} row {index}" if index is not None else self.origin  # 0-based, as --index
        example, paths = self.vision_example(row, where)
        pictures = [open_image(p, where) for p in paths]
        located = self.locate(example.turns)
        out = self.processor(
            text=[located.text],
            images=[pictures] if pictures else None,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_text_replacement_offsets=True,
        )
        ids = list(out["input_ids"][0])
        offsets = [tuple(o) for o in out["offset_mapping"][0]]
        if pictures and "text_replacement_offsets" not in out:
            raise DataError(
                f"{where}: this transformers' {type(self.processor).__name__} does not say where images expand "
                "(return_text_replacement_offsets, transformers 5.25 has it); upgrade transformers"
            )
        moved = list(out["text_replacement_offsets"][0]) if pictures else []
        spans = [(_shift(s, moved), _shift(e, moved)) for s, e in located.spans]
        labels = list(ids) if self.train_on == "all" else _mask_outside(ids, offsets, spans)
        image_spans = []
        for n, replaced in enumerate(moved):
            low, high = replaced["new_span"]
            inside = [i for i, (s, e) in enumerate(offsets) if s < high and e > low]
            for i in inside:  # image tokens never train, whatever train_on says
                labels[i] = IGNORE_INDEX
            width, height = pictures[n].size
            image_spans.append(ImageSpan(inside[0], inside[-1] + 1, width, height))
        full = len(ids)
        truncated = full > self.max_length
        if truncated:
            if any(span.end > self.max_length for span in image_spans):
                raise SkipRow(TOO_LONG)
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise SkipRow(NOTHING_TRAINED)
        return VisionEncoded(
            ids,
            labels,
            truncated,
            full,
            located.notes,
            images=tuple(str(p) for p in paths),
            image_spans=tuple(image_spans),
        )


def _shift(at: int, replacements: Sequence[Mapping[str, Any]]) -> int:
    """A position in the rendered text moved to where it is once the placeholders before it are expanded."""
    moved = at
    for replaced in replacements:
        old_start, old_end = replaced["span"]
        new_start, new_end = replaced["new_span"]
        if old_end <= at:
            moved += (new_end - new_start) - (old_end - old_start)
    return moved


def make_vision_encoder(
    processor: Any, recipe: Recipe, column_names: Sequence[str], sample_rows: Sequence[Mapping], origin: str
) -> VisionEncoder:
    """The vision encoder for rows in the messages or sharegpt shape (with or without an images column)."""
    recipe, fmt = resolve_format(recipe, column_names, sample_rows)
    if fmt not in ("messages", "sharegpt"):
        raise DataError(
            f"{origin}: data.format {fmt!r}: a vision model reads rows in the messages (or sharegpt) format, "
            "their images as image parts or an images column"
        )
    return VisionEncoder(processor, recipe, fmt, Path(origin).expanduser().parent, origin)


def encode_vision_rows(encoder: VisionEncoder, rows: Sequence[Mapping[str, Any]]) -> list[VisionEncoded]:
    """Every row encoded for training (skipped rows left out); none usable is an error naming the reasons."""
    from collections import Counter

    out: list[VisionEncoded] = []
    reasons: Counter[str] = Counter()
    for index in range(len(rows)):
        try:
            out.append(encoder.encode_row(rows[index], index))
        except SkipRow as skip:
            reasons[str(skip)] += 1
    if not out:
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "the data set is empty"
        raise DataError(f"{encoder.origin}: no usable rows ({why})")
    return out


def processor_for(recipe: Recipe) -> Any:
    """The model's processor when ``model.name`` is a vision-language model on disk (``tiny-vision``, a local
    folder, a hub id already cached), else None."""
    from lorastudio.models.resolve import resolve_model_path, text_only
    from lorastudio.models.vlm import is_vision_config, load_processor

    if text_only(recipe.model):
        return None
    path = resolve_model_path(recipe.model)
    if not is_vision_config(path):
        return None
    return load_processor(path, recipe.model.trust_remote_code)
