"""A deterministic benchmark corpus: varied English prose from seeded word and sentence templates.

No downloads: every document is built from the vocabularies below with ``random.Random(seed)``, so
the same ``(n, seed)`` always gives byte-identical files. Documents are ~200 words of Markdown on one
of a dozen topics, with a title, two or three paragraphs and mixed sentence shapes.

Example::

    python bench/corpus.py .data/bench/corpus_2000 2000
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

TOPICS = {
    "astronomy": (["telescope", "nebula", "orbit", "comet", "galaxy", "eclipse", "observatory", "spectrum",
                   "meteor shower", "red giant", "moon", "exoplanet"],
                  ["drifts", "glows", "collapses", "rotates", "dims", "flares", "aligns", "reflects"],
                  ["faint", "distant", "luminous", "icy", "ancient", "elliptical", "dusty", "massive"]),
    "cooking": (["sourdough", "broth", "skillet", "marinade", "oven", "pastry", "spice blend", "risotto",
                 "knife", "stock pot", "glaze", "dumpling"],
                ["simmers", "rises", "thickens", "caramelises", "rests", "browns", "cools", "absorbs"],
                ["crisp", "savoury", "tender", "smoky", "tangy", "buttery", "fragrant", "golden"]),
    "gardening": (["seedling", "compost", "hedge", "greenhouse", "trellis", "root system", "mulch", "orchard",
                   "raised bed", "tomato vine", "perennial", "watering can"],
                  ["sprouts", "wilts", "spreads", "blooms", "climbs", "decays", "drains", "flourishes"],
                  ["shady", "fertile", "sandy", "hardy", "fragile", "overgrown", "seasonal", "acidic"]),
    "finance": (["portfolio", "bond", "interest rate", "ledger", "dividend", "budget", "pension fund",
                 "invoice", "exchange rate", "mortgage", "audit", "balance sheet"],
                ["grows", "falls", "compounds", "matures", "fluctuates", "recovers", "defaults", "stabilises"],
                ["quarterly", "volatile", "prudent", "overdue", "diversified", "taxable", "fixed", "liquid"]),
    "hiking": (["trail", "ridge", "backpack", "summit", "switchback", "compass", "campsite", "river crossing",
                "map", "boot", "shelter", "waterfall"],
               ["winds", "climbs", "descends", "narrows", "floods", "freezes", "crosses", "opens"],
               ["rocky", "steep", "muddy", "remote", "scenic", "exposed", "quiet", "marked"]),
    "software": (["compiler", "database", "cache", "scheduler", "API", "queue", "deployment", "test suite",
                  "container", "log file", "index", "parser"],
                 ["fails", "retries", "scales", "blocks", "recovers", "times out", "restarts", "compiles"],
                 ["distributed", "idempotent", "stale", "concurrent", "verbose", "flaky", "immutable", "lazy"]),
    "medicine": (["vaccine", "clinic", "symptom", "dosage", "nurse", "blood test", "antibiotic", "ward",
                  "diagnosis", "fracture", "therapy", "patient record"],
                 ["heals", "spreads", "improves", "worsens", "responds", "stabilises", "recurs", "subsides"],
                 ["chronic", "acute", "mild", "routine", "sterile", "clinical", "preventive", "severe"]),
    "music": (["violin", "chord", "rehearsal", "orchestra", "melody", "drum kit", "score", "concert hall",
               "tempo", "choir", "amplifier", "harmony"],
              ["swells", "resolves", "echoes", "fades", "modulates", "repeats", "builds", "pauses"],
              ["minor", "syncopated", "acoustic", "haunting", "brisk", "layered", "dissonant", "lyrical"]),
    "sailing": (["hull", "mainsail", "harbour", "anchor", "tide", "rudder", "crew", "lighthouse", "mooring",
                 "swell", "keel", "chart"],
                ["heels", "drifts", "tacks", "docks", "capsizes", "rises", "veers", "steadies"],
                ["choppy", "sheltered", "salty", "leeward", "shallow", "gusty", "calm", "tidal"]),
    "history": (["empire", "treaty", "archive", "monastery", "trade route", "revolution", "manuscript",
                 "dynasty", "fortress", "census", "parliament", "harbour town"],
                ["declines", "expands", "endures", "collapses", "flourishes", "records", "resists", "unites"],
                ["medieval", "colonial", "forgotten", "imperial", "rural", "contested", "ancient", "coastal"]),
    "energy": (["turbine", "battery", "solar panel", "grid", "transformer", "heat pump", "reactor",
                "power line", "inverter", "wind farm", "substation", "meter"],
               ["charges", "overheats", "balances", "generates", "trips", "stores", "peaks", "idles"],
               ["renewable", "efficient", "offshore", "residential", "intermittent", "high-voltage", "smart",
                "backup"]),
    "education": (["classroom", "syllabus", "exam", "lecture", "library", "tutor", "essay", "laboratory",
                   "semester", "curriculum", "workshop", "textbook"],
                  ["improves", "challenges", "engages", "assesses", "inspires", "lags", "adapts", "expands"],
                  ["practical", "rigorous", "introductory", "collaborative", "remote", "advanced", "weekly",
                   "optional"]),
}
PEOPLE = ["Amira", "Bruno", "Chen", "Dagny", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kofi", "Lena",
          "Mateo", "Noor", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yusuf"]
PLACES = ["the valley", "the old town", "the northern coast", "the university", "the harbour", "the plateau",
          "the city centre", "the island", "the market square", "the research station", "the border region"]
TIMES = ["in early spring", "after the storm", "during the night shift", "every Tuesday", "last winter",
         "before dawn", "at the end of the season", "within a week", "over several decades", "by noon"]
CONNECT = ["However,", "Meanwhile,", "As a result,", "In practice,", "For example,", "Surprisingly,",
           "Even so,", "Later,", "In most cases,", "On the other hand,"]
TEMPLATES = [
    "The {adj} {n1} {v} {time}, and {person} notes that the {n2} {v2} as well.",
    "{person} explains how a {adj} {n1} {v} when the {n2} is {adj2}.",
    "{conn} the {n1} near {place} {v} more often than the {adj} {n2}.",
    "Why does the {n1} {vbase} {time}? Nobody in {place} has a {adj} answer yet.",
    "A {adj} {n1} rarely {v}; the {n2}, by contrast, {v2} {time}.",
    "{person} and {person2} compared the {n1} with a {adj2} {n2} at {place}.",
    "{conn} most guides agree that a {adj} {n1} needs a {adj2} {n2}.",
    "When the {n1} {v}, check the {n2} first and write down what {v2}.",
    "In {place}, the {n1} {v} {time} because the {n2} is so {adj}.",
    "{person} keeps a notebook about every {adj} {n1} that {v} {time}.",
    "The report from {place} lists {num} cases where the {n1} {v} and the {n2} {v2}.",
    "It takes about {num} minutes before a {adj} {n1} {v}.",
]


def _base(verb: str) -> str:
    first, *rest = verb.split(" ")
    if first.endswith("ies"):
        first = first[:-3] + "y"
    elif first.endswith(("ches", "shes", "sses", "xes")):
        first = first[:-2]
    elif first.endswith("s"):
        first = first[:-1]
    return " ".join([first, *rest])


def _sentence(rng: random.Random, nouns, verbs, adjs) -> str:
    n1, n2 = rng.sample(nouns, 2)
    v, v2 = rng.sample(verbs, 2)
    a, a2 = rng.sample(adjs, 2)
    p, p2 = rng.sample(PEOPLE, 2)
    s = rng.choice(TEMPLATES).format(adj=a, adj2=a2, n1=n1, n2=n2, v=v, v2=v2, vbase=_base(v), person=p,
                                     person2=p2, place=rng.choice(PLACES), time=rng.choice(TIMES),
                                     conn=rng.choice(CONNECT), num=rng.randint(2, 90))
    return s[0].upper() + s[1:]


def document(rng: random.Random, words: int = 200) -> tuple[str, str]:
    """One document: ``(topic, markdown text)`` of about ``words`` words."""
    topic = rng.choice(sorted(TOPICS))
    nouns, verbs, adjs = TOPICS[topic]
    # A second topic mixed in now and then, so documents are not pure topic clusters.
    other = TOPICS[rng.choice(sorted(TOPICS))]
    title = f"# {rng.choice(adjs).capitalize()} {rng.choice(nouns)} {rng.choice(TIMES)}"
    paragraphs, current, count = [], [], 0
    target_par = rng.randint(50, 90)
    while count < words:
        pool = other if rng.random() < 0.15 else (nouns, verbs, adjs)
        s = _sentence(rng, *pool)
        current.append(s)
        count += len(s.split())
        if sum(len(x.split()) for x in current) >= target_par:
            paragraphs.append(" ".join(current))
            current, target_par = [], rng.randint(50, 90)
    if current:
        paragraphs.append(" ".join(current))
    return topic, title + "\n\n" + "\n\n".join(paragraphs) + "\n"


def build(root: str | Path, n: int, seed: int = 8, words: int = 200) -> Path:
    """Write ``n`` documents under ``root/<topic>/doc_<i>.md`` (skipped when already complete)."""
    root = Path(root)
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == f"{n} {seed} {words}":
        return root
    rng = random.Random(seed)
    for i in range(n):
        topic, text = document(rng, words)
        path = root / topic / f"doc_{i:06d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    marker.write_text(f"{n} {seed} {words}")
    return root


if __name__ == "__main__":
    build(sys.argv[1], int(sys.argv[2]))
