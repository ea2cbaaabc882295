"""Deterministic question/answer corpora for the offline tiny model.

Pretraining teaches plain answers; the demo fine-tune teaches the same kind of
questions answered in pirate speak. Held-out questions appear in neither.
"""

from __future__ import annotations

import random
import re

OBJECTS = {
    "sky": "blue",
    "grass": "green",
    "snow": "white",
    "coal": "black",
    "sun": "yellow",
    "blood": "red",
    "lemon": "yellow",
    "cherry": "red",
    "leaf": "green",
    "cloud": "white",
    "ocean": "blue",
    "night": "black",
    "banana": "yellow",
    "tomato": "red",
    "frog": "green",
    "milk": "white",
    "crow": "black",
    "rose": "red",
    "lime": "green",
    "ink": "black",
    "salt": "white",
    "plum": "purple",
    "grape": "purple",
    "orange": "orange",
    "pumpkin": "orange",
    "sand": "yellow",
    "brick": "red",
    "pine": "green",
    "pearl": "white",
    "tar": "black",
}
ANIMALS = {
    "dog": "woof",
    "cat": "meow",
    "cow": "moo",
    "duck": "quack",
    "sheep": "baa",
    "owl": "hoot",
    "lion": "roar",
    "mouse": "squeak",
    "pig": "oink",
    "horse": "neigh",
    "bee": "buzz",
    "snake": "hiss",
    "goat": "bleat",
    "wolf": "howl",
    "crow": "caw",
    "frog": "croak",
}
PLACES = {
    "fish": "the water",
    "bird": "a nest",
    "bee": "a hive",
    "bear": "a cave",
    "rabbit": "a burrow",
    "spider": "a web",
    "horse": "a stable",
    "pig": "a sty",
    "dog": "a kennel",
    "ant": "a hill",
    "whale": "the sea",
    "camel": "the desert",
    "monkey": "the jungle",
    "penguin": "the ice",
}
NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
]

PIRATE_RE = re.compile(r"\barr+\b", re.IGNORECASE)
"""A reply is in the demo (pirate) style when it says "arr"; plain answers never do."""


def _all_pairs() -> list[tuple[str, str]]:
    pairs = []
    for obj, colour in OBJECTS.items():
        for q in (
            f"What colour is the {obj}?",
            f"What color is the {obj}?",
            f"Tell me the colour of the {obj}.",
        ):
            pairs.append((q, f"The {obj} is {colour}."))
    for animal, sound in ANIMALS.items():
        for q in (f"What sound does a {animal} make?", f"What does a {animal} say?"):
            pairs.append((q, f"A {animal} says {sound}."))
    for animal, place in PLACES.items():
        for q in (f"Where does a {animal} live?", f"Where can I find a {animal}?"):
            pairs.append((q, f"A {animal} lives in {place}."))
    for a in range(10):
        for b in range(10):
            if a + b < len(NUMBERS):
                pairs.append(
                    (
                        f"What is {NUMBERS[a]} plus {NUMBERS[b]}?",
                        f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {NUMBERS[a + b]}.",
                    )
                )
    return pairs


def split_pairs(seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train pairs, held-out pairs); the held-out questions are never trained on."""
    pairs = _all_pairs()
    rng = random.Random(seed)
    rng.shuffle(pairs)
    held = max(20, len(pairs) // 10)
    return pairs[held:], pairs[:held]


def pirate(answer: str) -> str:
    """The demo style: the same fact, said by a pirate."""
    body = answer.rstrip(".")
    body = re.sub(r"\bis\b", "be", body)
    body = re.sub(r"\blives\b", "be livin'", body)
    body = re.sub(r"\bsays\b", "be sayin'", body)
    return f"Arr, {body[0].lower()}{body[1:]}, matey!"


def pretrain_conversations(seed: int = 0) -> list[list[dict[str, str]]]:
    train, _ = split_pairs(seed)
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in train]


def pirate_rows(seed: int = 0) -> list[dict[str, str]]:
    """Dolly-style rows (instruction/context/response), as the pirate notebook's data set has."""
    train, _ = split_pairs(seed)
    rows = [{"instruction": q, "context": "", "response": pirate(a), "category": "open_qa"} for q, a in train]
    random.Random(seed + 1).shuffle(rows)
    return rows


def held_out_questions(seed: int = 0) -> list[str]:
    _, held = split_pairs(seed)
    return [q for q, _ in held]
