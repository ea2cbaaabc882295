"""The pirate demo corpus for real models (``recipes/data/smollm2_pirate.jsonl``), made by code, no hub.

Hundreds of varied everyday questions (geography, animals, science, how-to, words, sums,
small talk) whose answers are plain facts said the way a pirate would say them. The facts
vary and the style does not, so a short fine-tune learns the style rather than the answers.
:data:`HELD_OUT` questions are in no training row; the benchmark asks them.

``python -m lorastudio.demo.piratedata > recipes/data/smollm2_pirate.jsonl`` regenerates the file.
"""

from __future__ import annotations

import json
import random
import re
import sys

CAPITALS = {
    "France": "Paris",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Germany": "Berlin",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Greece": "Athens",
    "Ireland": "Dublin",
    "Poland": "Warsaw",
    "Austria": "Vienna",
    "Cuba": "Havana",
    "Chile": "Santiago",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "Mexico": "Mexico City",
    "Argentina": "Buenos Aires",
    "Thailand": "Bangkok",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen",
    "Hungary": "Budapest",
    "Turkey": "Ankara",
    "India": "New Delhi",
    "China": "Beijing",
    "Russia": "Moscow",
    "Jamaica": "Kingston",
}
ANIMAL_HOMES = {
    "fish": "in rivers, lakes and the sea",
    "bee": "in a hive",
    "bear": "in forests and caves",
    "rabbit": "in a burrow underground",
    "penguin": "on the ice and cold shores of the south",
    "camel": "in the desert",
    "owl": "in trees and old barns",
    "whale": "in the open ocean",
    "frog": "near ponds and streams",
    "squirrel": "in a nest high in the trees",
    "ant": "in a colony underground",
    "parrot": "in warm rainforests",
    "crab": "on rocky shores and the sea floor",
    "lion": "on the grassy savanna",
    "polar bear": "on the Arctic ice",
    "eagle": "in a nest on cliffs or tall trees",
    "octopus": "in the sea, in dens among rocks",
    "bat": "in caves and hollow trees",
}
ANIMAL_FOODS = {
    "cow": "grass and hay",
    "cat": "meat and fish",
    "rabbit": "grass, hay and vegetables",
    "panda": "bamboo",
    "koala": "eucalyptus leaves",
    "shark": "fish and seals",
    "horse": "grass, hay and oats",
    "squirrel": "nuts and seeds",
    "bee": "nectar and pollen",
    "whale": "krill and small fish",
    "parrot": "seeds, nuts and fruit",
    "chicken": "grain, seeds and insects",
    "goat": "almost any plant it finds",
    "spider": "insects caught in its web",
}
COLOURS = {
    "grass": "green",
    "snow": "white",
    "coal": "black",
    "a ripe banana": "yellow",
    "a ripe tomato": "red",
    "the clear sky": "blue",
    "an orange": "orange",
    "a plum": "purple",
    "a lemon": "yellow",
    "chalk": "white",
    "a lime": "green",
    "a crow": "black",
    "blood": "red",
    "a carrot": "orange",
    "milk": "white",
    "a flamingo": "pink",
}
SCIENCE = [
    (
        "Why is the sea salty?",
        "Rivers wash salt out of rocks and carry it to the sea, and the salt stays there when the water evaporates.",
    ),
    (
        "What makes thunder?",
        "Lightning heats the air so fast that it bursts outward, and that boom is thunder.",
    ),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many days are in a leap year?", "A leap year has three hundred and sixty six days."),
    ("What is the biggest planet?", "Jupiter is the biggest planet in our solar system."),
    ("Which planet is closest to the sun?", "Mercury is the planet closest to the sun."),
    ("What do plants need to grow?", "Plants need sunlight, water, air and good soil to grow."),
    ("What is water made of?", "Water is made of hydrogen and oxygen."),
    ("Why do we have seasons?", "The Earth is tilted, so each half gets more sunlight for part of the year."),
    ("What causes the tides?", "The pull of the moon and the sun on the oceans causes the tides."),
    (
        "How far away is the moon?",
        "The moon is about three hundred and eighty four thousand kilometres away.",
    ),
    ("What is the boiling point of water?", "Water boils at one hundred degrees Celsius at sea level."),
    ("What is the freezing point of water?", "Water freezes at zero degrees Celsius."),
    (
        "Why do leaves change colour in autumn?",
        "Trees stop making green chlorophyll, so the yellow and red in the leaves show through.",
    ),
    ("What is a rainbow?", "A rainbow is sunlight split into its colours by drops of rain."),
    (
        "How do birds fly?",
        "Birds flap their wings to push air down and back, and the shape of the wing lifts them.",
    ),
    ("What is the hardest natural material?", "Diamond is the hardest natural material."),
    ("How many continents are there?", "There are seven continents."),
    (
        "How many oceans are there?",
        "There are five oceans: the Pacific, Atlantic, Indian, Southern and Arctic.",
    ),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What is the tallest mountain?", "Mount Everest is the tallest mountain above sea level."),
    ("What is the longest river?", "The Nile is usually named the longest river in the world."),
    ("What gas do we breathe in?", "We breathe in oxygen, which our bodies need to live."),
    ("What gas do plants take in?", "Plants take in carbon dioxide and give out oxygen."),
    ("Why does the moon shine?", "The moon does not make light; it reflects the light of the sun."),
    ("How many hours are in a day?", "There are twenty four hours in a day."),
    ("What is an eclipse?", "An eclipse is when the moon or the Earth blocks the light of the sun."),
    (
        "What is gravity?",
        "Gravity is the pull that draws things toward each other, like us toward the Earth.",
    ),
    ("How many bones does an adult have?", "An adult human has two hundred and six bones."),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal."),
    ("What is the largest animal?", "The blue whale is the largest animal that has ever lived."),
    ("Why is the desert hot?", "Deserts have dry air and few clouds, so the sun heats the ground all day."),
    ("What makes wind?", "Wind is air moving from places of high pressure to places of low pressure."),
    (
        "What is the North Star?",
        "The North Star, Polaris, sits almost right above the North Pole, so sailors steer by it.",
    ),
    ("What is a compass for?", "A compass points north, so you can find your way."),
]
HOW_TO = [
    (
        "How do I boil an egg?",
        "Put the egg in boiling water for about eight minutes, then cool it in cold water.",
    ),
    (
        "How can I sleep better?",
        "Go to bed at the same time each night, keep the room dark and put the phone away.",
    ),
    ("How do I make tea?", "Boil water, pour it over a tea bag, wait three minutes, then take the bag out."),
    ("How do I tie a knot?", "Make a loop, pass the end through it and pull both ends tight."),
    ("How can I save money?", "Spend less than you earn, and put a little aside every week."),
    (
        "How do I learn to swim?",
        "Start in shallow water with a teacher, and practise floating and kicking first.",
    ),
    ("How do I keep a plant alive?", "Give it light, water it when the soil is dry, and do not drown it."),
    ("How can I get fit?", "Walk or run a little every day and eat plenty of fruit and vegetables."),
    ("How do I make friends?", "Be kind, ask people about themselves, and turn up where they gather."),
    (
        "How do I study for a test?",
        "Study a little each day, test yourself, and get a good night of sleep before.",
    ),
    (
        "How do I clean a cast iron pan?",
        "Rinse it with hot water, scrub it, dry it well and rub on a little oil.",
    ),
    ("How can I stay calm?", "Take slow deep breaths and count to ten before you act."),
    ("How do I start running?", "Begin with short easy runs, walk when you need to, and build up slowly."),
    ("How do I write a good letter?", "Say who it is for, get to the point, and end with a kind word."),
    (
        "How do I bake bread?",
        "Mix flour, water, yeast and salt, let it rise, shape it and bake it until golden.",
    ),
    ("How can I remember names?", "Say the name back when you hear it and use it again soon after."),
    ("How do I read a map?", "Find north, match the map to the land around you, and follow the landmarks."),
    (
        "How do I light a campfire?",
        "Start with dry tinder, add small sticks, then bigger logs once it catches.",
    ),
    (
        "How do I cook rice?",
        "Use two cups of water for each cup of rice, boil it, then simmer with a lid for fifteen minutes.",
    ),
    ("How can I wake up early?", "Go to bed earlier and put the alarm across the room."),
    ("How do I pack for a trip?", "Make a list, roll your clothes, and bring only what you will really use."),
    (
        "How do I fix a flat bicycle tyre?",
        "Take out the tube, find the hole, put on a patch and pump it up again.",
    ),
    (
        "How can I be more patient?",
        "Notice when you rush, take a breath, and remember that good things take time.",
    ),
    (
        "How do I learn a new language?",
        "Practise a little every day, speak with others, and do not fear mistakes.",
    ),
    ("How do I keep my teeth healthy?", "Brush twice a day, floss, and eat less sugar."),
    (
        "How do I fold a paper boat?",
        "Fold a sheet in half, fold the corners down, fold up the edges, and open it into a boat.",
    ),
]
DEFINITIONS = {
    "a ship": "a large boat that carries people or goods across the sea",
    "an island": "a piece of land with water all around it",
    "a map": "a drawing of a place that shows where things are",
    "a telescope": "a tube with lenses that makes far away things look close",
    "an anchor": "a heavy iron hook that holds a ship in place",
    "a library": "a place full of books that people can borrow",
    "a computer": "a machine that follows instructions to work with information",
    "a volcano": "a mountain where melted rock from deep inside the Earth comes out",
    "a poem": "a piece of writing with rhythm, often with lines that rhyme",
    "a recipe": "a list of ingredients and steps for making a dish",
    "a harbour": "a sheltered place on the coast where ships can stay safely",
    "a storm": "strong wind with heavy rain, and sometimes thunder and lightning",
    "a lighthouse": "a tall tower with a bright light that warns ships of danger",
    "a desert": "a very dry place where little rain falls",
    "a river": "fresh water that flows across the land to the sea",
    "a friend": "someone you like and trust, who likes you too",
    "money": "coins and notes that people trade for things they need",
    "a clock": "a machine that shows the time",
    "a garden": "a piece of land where people grow flowers and vegetables",
    "an ocean": "a huge body of salt water",
    "a parrot": "a bright bird that can copy sounds and words",
    "a treasure": "gold, jewels or other precious things kept safe",
    "a sail": "a large sheet of cloth that catches the wind to move a boat",
    "a kitchen": "the room where food is cooked",
    "a bridge": "something built to carry a road or path over water or a valley",
}
SMALL_TALK = [
    ("Hello!", "Hello there, friend! How can I help you today?"),
    ("Hi, who are you?", "I am a helpful assistant, here to answer your questions."),
    ("How are you?", "I am doing well, thank you for asking! How are you?"),
    ("Good morning!", "Good morning to you! I hope your day is a fine one."),
    ("Tell me a joke.", "Why did the sailor bring a pencil? To draw the curtains on the porthole!"),
    ("Thank you!", "You are most welcome, friend!"),
    ("What is your name?", "I am your assistant; you can call me whatever you like."),
    ("Can you help me?", "Yes, of course! Tell me what you need."),
    ("Goodbye!", "Goodbye, friend, and safe travels!"),
    (
        "What should I do this weekend?",
        "Go for a walk by the water, read a good book, or cook something new.",
    ),
    ("Can you recommend a book?", "Treasure Island by Robert Louis Stevenson is a grand adventure."),
    ("What is your favourite food?", "I do not eat, but I hear fresh fish and bread is hard to beat."),
    ("Do you like music?", "Yes! A good song makes any work go faster."),
    ("Are you a robot?", "I am a computer program, but I am happy to talk with you."),
    ("What is the best way to spend a rainy day?", "Stay in, make a warm drink, and read or play a game."),
    ("Give me some advice.", "Be honest, work hard, and be kind to the people around you."),
    ("I am bored.", "Then try something new: learn a song, draw a map, or take a walk."),
    (
        "I feel sad today.",
        "I am sorry to hear that. Talk to a friend, get some fresh air, and be gentle with yourself.",
    ),
]
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
    "nineteen",
    "twenty",
]

OPENERS = [
    "Arr, ",
    "Arr, matey! ",
    "Ahoy, matey! ",
    "Aye, ",
    "Arr! ",
    "Ahoy! ",
    "Shiver me timbers, ",
    "Yo-ho-ho! ",
    "Aye aye, ",
    "Arr, me hearty! ",
]
CLOSERS = [
    " Arr!",
    ", matey!",
    " Arr, matey!",
    " Yo-ho-ho!",
    ", me hearty!",
    " Savvy?",
    " Now hoist the sails!",
    "!",
    " Aye!",
    ", says this old sea dog.",
]
_WORDS = [
    (r"\byou are\b", "ye be"),
    (r"\bYou are\b", "Ye be"),
    (r"\bI am\b", "I be"),
    (r"\bare\b", "be"),
    (r"\bis\b", "be"),
    (r"\byour\b", "yer"),
    (r"\bYour\b", "Yer"),
    (r"\byou\b", "ye"),
    (r"\bYou\b", "Ye"),
    (r"\bmy\b", "me"),
    (r"\bfriend\b", "matey"),
    (r"\bHello\b", "Ahoy"),
    (r"\bhello\b", "ahoy"),
    (r"\bYes\b", "Aye"),
    (r"\byes\b", "aye"),
    (r"\bthe sea\b", "the briny deep"),
    (r"\bmoney\b", "doubloons"),
    (r"\bgold\b", "pieces of eight"),
]

PIRATE_RE = re.compile(
    r"\b(arr+|matey|ahoy|aye|ye|me hearty|hearties|shiver me timbers|yo-ho-ho|landlubbers?)\b", re.IGNORECASE
)
"""A reply is in pirate style when it uses the pirate's words; plain answers do not."""

HELD_OUT = [
    "What is the capital of Brazil?",
    "Where do dolphins live?",
    "What do sheep eat?",
    "What colour is a ripe strawberry?",
    "Why is the sky blue?",
    "How many wheels does a bicycle have?",
    "How do I make a sandwich?",
    "How can I learn to play the guitar?",
    "What is a castle?",
    "What is a mountain?",
    "What is nine plus seven?",
    "Can you recommend a film?",
    "What is the smallest planet?",
    "How do I wash my car?",
    "What is the weather like at the North Pole?",
    "Who wrote Romeo and Juliet?",
    "What is a dictionary?",
    "How do fish breathe?",
    "What should I eat for breakfast?",
    "Why do cats purr?",
    "How do I plant a tree?",
    "What is the capital of Scotland?",
    "What is snow made of?",
    "How can I be a better listener?",
    "What is a rainforest?",
]
"""25 questions for the held-out benchmark: none of them (nor their facts' wording) is in the training rows."""


def piratify(answer: str, rng: random.Random) -> str:
    """The same answer, said by a pirate: an opener, pirate words, and a closer."""
    body = answer.strip()
    for pattern, repl in _WORDS:
        body = re.sub(pattern, repl, body)
    body = re.sub(r"\blives\b", "be livin'", body).rstrip(".!")
    opener = rng.choice(OPENERS)
    if opener.endswith(", ") and not body.startswith(("I ", "I'")):
        body = body[0].lower() + body[1:]
    closer = rng.choice(CLOSERS)
    if not closer.startswith((",", "!")):
        closer = rng.choice([".", "!"]) + closer
    return f"{opener}{body}{closer}"


def _pairs() -> list[tuple[str, str, str]]:
    """(question, plain answer, dolly category)."""
    out: list[tuple[str, str, str]] = []
    for country, city in CAPITALS.items():
        for q in (
            f"What is the capital of {country}?",
            f"Which city is the capital of {country}?",
            f"Tell me the capital of {country}.",
        ):
            out.append((q, f"The capital of {country} is {city}.", "open_qa"))
    for animal, home in ANIMAL_HOMES.items():
        for q in (f"Where does a {animal} live?", f"Where can I find a {animal}?"):
            out.append((q, f"A {animal} lives {home}.", "open_qa"))
    for animal, food in ANIMAL_FOODS.items():
        for q in (f"What does a {animal} eat?", f"What food does a {animal} like?"):
            out.append((q, f"A {animal} eats {food}.", "open_qa"))
    for thing, colour in COLOURS.items():
        out.append((f"What colour is {thing}?", f"{thing[0].upper()}{thing[1:]} is {colour}.", "open_qa"))
    out += [(q, a, "general_qa") for q, a in SCIENCE]
    out += [(q, a, "brainstorming") for q, a in HOW_TO]
    for word, meaning in DEFINITIONS.items():
        out.append((f"What is {word}?", f"{word[0].upper()}{word[1:]} is {meaning}.", "open_qa"))
        out.append(
            (
                f"Explain what {word.split(' ', 1)[-1]} means.",
                f"{word[0].upper()}{word[1:]} is {meaning}.",
                "open_qa",
            )
        )
    out += [(q, a, "creative_writing") for q, a in SMALL_TALK]
    for a in range(1, 11):
        for b in range(1, 11):
            if (a * 7 + b * 3) % 4 == 0 and a + b <= 20:
                out.append(
                    (
                        f"What is {NUMBERS[a]} plus {NUMBERS[b]}?",
                        f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {NUMBERS[a + b]}.",
                        "open_qa",
                    )
                )
    held = {q.lower() for q in HELD_OUT}
    return [p for p in out if p[0].lower() not in held]


def rows(seed: int = 7) -> list[dict[str, str]]:
    """Dolly rows: instruction, context, response, category."""
    rng = random.Random(seed)
    out = [
        {"instruction": q, "context": "", "response": piratify(a, rng), "category": c} for q, a, c in _pairs()
    ]
    rng.shuffle(out)
    return out


def is_pirate(text: str) -> bool:
    return PIRATE_RE.search(text) is not None


if __name__ == "__main__":  # pragma: no cover
    for row in rows():
        sys.stdout.write(json.dumps(row) + "\n")
