"""The tiny vision demo's images and captions: coloured shapes drawn with PIL, captions written here.

``write_shapes(folder)`` writes ``shapes/*.png`` and ``tiny_shapes.jsonl`` (messages rows whose user turn holds
an image part, its path relative to the data file); the copies shipped in ``recipes/data`` are its output
(``python -m lorastudio.demo.shapes recipes/data`` rewrites them). Deterministic: the same bytes every time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
SIZE = 64
QUESTIONS = ("What is in the picture?", "Describe the image.", "What do you see?")
DATA_FILE = "tiny_shapes.jsonl"


def draw(shape: str, colour: str):  # -> PIL.Image.Image
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    fill, box = COLOURS[colour], (12, 12, SIZE - 12, SIZE - 12)
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(SIZE // 2, 10), (SIZE - 10, SIZE - 12), (10, SIZE - 12)], fill=fill)
    return image


def caption(shape: str, colour: str) -> str:
    return f"A {colour} {shape}."


def rows() -> list[dict]:
    """One row per shape and colour, each asked one of the questions in turn."""
    out = []
    for n, (shape, colour) in enumerate((s, c) for s in SHAPES for c in COLOURS):
        out.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "image": f"shapes/{colour}-{shape}.png"},
                            {"type": "text", "text": QUESTIONS[n % len(QUESTIONS)]},
                        ],
                    },
                    {"role": "assistant", "content": caption(shape, colour)},
                ]
            }
        )
    return out


def write_shapes(folder: Path) -> Path:
    """Write the images and the data file into ``folder``; return the data file."""
    (folder / "shapes").mkdir(parents=True, exist_ok=True)
    for shape in SHAPES:
        for colour in COLOURS:
            draw(shape, colour).save(folder / "shapes" / f"{colour}-{shape}.png", optimize=False)
    data = folder / DATA_FILE
    data.write_text("".join(json.dumps(row) + "\n" for row in rows()))
    return data


if __name__ == "__main__":
    print(write_shapes(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
