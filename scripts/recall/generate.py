#!/usr/bin/env python3
"""Writes the recall workspace: a year of daily logs of realistic filler with the facts of
facts.py hidden among them, MEMORY.md and a few knowledge files, plus answers.json that
says where each question's fact is (file and 1-based line).

    generate.py WORKSPACE_DIR [--seed N] [--years N]

Deterministic for a given seed, so every run measures the same text. `--years N` writes
N years of logs ending with 2025 (the facts stay in 2025): the benchmarks' large index.
"""
import datetime
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from facts import FACTS  # noqa: E402

PEOPLE = ["Marta", "Sam", "Priya", "Jonas", "Aisha", "Tom", "Ines", "Ravi", "Olga", "Ben"]
PLACES = ["the office", "home", "the library", "the café on the corner", "the coworking space"]
FOODS = ["pasta with pesto", "a lentil curry", "leftover soup", "tacos", "a big salad",
         "risotto", "stir-fried noodles", "pizza from Luigi's", "shakshuka", "fish and chips"]
SERVICES = ["billing", "search", "auth", "payments", "notifications", "reporting", "the API gateway"]
BOOKS = ["Piranesi", "The Overstory", "Project Hail Mary", "Dune", "Klara and the Sun",
         "A Memory Called Empire", "The Dispossessed"]
WEATHER = ["rain all day", "sunny and cold", "grey and windy", "warm, 24 degrees", "fog in the morning",
           "snow flurries", "storm warning in the evening"]

FILLER = [
    # work
    lambda r: f"Standup: {r.choice(PEOPLE)} is blocked on the {r.choice(SERVICES)} tests.",
    lambda r: f"Reviewed {r.choice(PEOPLE)}'s pull request for {r.choice(SERVICES)}, left a few comments.",
    lambda r: f"Deployed {r.choice(SERVICES)} to production, no alerts so far.",
    lambda r: f"Long meeting about the Q{r.randint(1, 4)} roadmap, not much decided.",
    lambda r: f"Paired with {r.choice(PEOPLE)} on a flaky integration test in {r.choice(SERVICES)}.",
    lambda r: f"Wrote the design doc for the {r.choice(SERVICES)} rate limiter.",
    lambda r: f"Incident review for the {r.choice(SERVICES)} outage last week, action items assigned.",
    lambda r: f"Cleared my inbox, {r.randint(20, 90)} emails.",
    lambda r: f"1:1 with {r.choice(PEOPLE)}: talked about the team offsite.",
    lambda r: f"Kubernetes dashboard showed high memory on the {r.choice(SERVICES)} pods again.",
    lambda r: f"Worked from {r.choice(PLACES)}, got the {r.choice(SERVICES)} refactor merged.",
    lambda r: f"Sprint planning: took {r.randint(3, 8)} tickets.",
    lambda r: "Database backup job failed once, reran it manually.",
    # health and exercise
    lambda r: f"Ran {r.randint(4, 8)} km easy, legs tired.",
    lambda r: f"Yoga class at lunch, {r.choice(['good stretch', 'hard one', 'relaxing'])}.",
    lambda r: f"Walked {r.randint(6, 14)}k steps today.",
    lambda r: f"Slept badly, woke up at {r.randint(3, 5)} am.",
    lambda r: f"Cycled to work, {r.choice(WEATHER)}.",
    lambda r: "Headache in the afternoon, drank more water.",
    lambda r: f"Physio exercises for the knee, {r.randint(10, 25)} minutes.",
    # home and errands
    lambda r: f"Groceries at Albert Heijn, {r.randint(35, 120)} euros.",
    lambda r: f"Cooked {r.choice(FOODS)} for dinner.",
    lambda r: "Did two loads of laundry.",
    lambda r: f"Paid the {r.choice(['water', 'internet', 'phone', 'council tax'])} bill.",
    lambda r: "Cleaned the kitchen and took out the recycling.",
    lambda r: f"Picked up a parcel from the neighbours ({r.choice(['books', 'shoes', 'a lamp', 'cables'])}).",
    lambda r: "Fixed the dripping tap in the bathroom.",
    lambda r: f"Filled up the car, {r.randint(40, 75)} euros of petrol.",
    lambda r: "Car wash and vacuumed the seats.",
    lambda r: f"Watered the balcony plants, {r.choice(WEATHER)}.",
    lambda r: "Booked train tickets for the weekend.",
    lambda r: "Renewed the library books online.",
    # social and leisure
    lambda r: f"Dinner with {r.choice(PEOPLE)} at {r.choice(['the Thai place', 'a new bistro', 'their flat'])}.",
    lambda r: f"Call with mum, she says hi to {r.choice(PEOPLE)}.",
    lambda r: f"Reading {r.choice(BOOKS)}, halfway through.",
    lambda r: f"Watched a documentary about {r.choice(['octopuses', 'the moon landing', 'deep sea fish', 'glaciers'])}.",
    lambda r: f"Board games night with {r.choice(PEOPLE)} and {r.choice(PEOPLE)}.",
    lambda r: f"Weather: {r.choice(WEATHER)}.",
    lambda r: "Practised guitar chords for half an hour." if r.random() < 0.3 else "Listened to a new album while cooking.",
    lambda r: f"Kids' football practice, {r.choice(['won', 'lost', 'drew'])} the friendly.",
    lambda r: f"Noah has homework about {r.choice(['volcanoes', 'fractions', 'the Romans', 'spelling'])}.",
    lambda r: "Emma's swimming lesson, she can do the backstroke now.",
]

MEMORY_FILLER = {
    "Home": ["- Bins go out on Tuesday evening", "- Spare house key is with Carmen next door",
             "- Boiler service is due every autumn", "- Internet is Ziggo, 500 Mbit"],
    "Health": ["- GP is Dr. Visser at the Oud-West practice", "- Vitamin D in winter",
               "- Eye test every two years"],
    "Family": ["- Mum's birthday is 3 November", "- Noah is 9, Emma is 7",
               "- Sam prefers window seats on flights"],
    "Work": ["- Team: payments platform", "- Manager: Priya", "- Deploys only Monday to Thursday"],
    "Preferences": ["- Likes: spicy food, jazz, long walks", "- Dislikes: early meetings",
                    "- Coffee: no sugar"],
}

KNOWLEDGE = {
    "knowledge/car.md": {"Car": ["Toyota Corolla 2017, hybrid, licence plate in the glovebox."],
                         "Service": ["- Garage: Autobedrijf De Vries", "- Tyre pressure 2.3 bar front, 2.2 rear",
                                     "- Last service in February"]},
    "knowledge/work.md": {"Work notes": ["Things to remember about the job."],
                          "On call": ["- Rotation changes every Monday at 10:00",
                                      "- Escalate to the incident channel after 15 minutes"],
                          "Release process": ["- Tag, changelog, then the deploy job",
                                              "- Staging soak of one hour before production"]},
    "knowledge/recipes.md": {"Recipes": ["Things that worked."],
                             "Pancakes": ["- Rest the batter for 30 minutes", "- Medium heat, a little butter"],
                             "Chili": ["- Two cans of beans, one of tomatoes, smoked paprika",
                                       "- Simmer for an hour"]},
}


def day_lines(r, date, heading):
    lines = []
    if heading:
        lines += [f"# {date.strftime('%A %d %B %Y')}", ""]
    t = r.randint(7 * 60, 9 * 60)
    for _ in range(r.randint(4, 11)):
        t += r.randint(20, 110)
        if t >= 23 * 60:
            break
        lines.append(f"- {t // 60:02d}:{t % 60:02d} {r.choice(FILLER)(r)}")
    return lines


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: generate.py WORKSPACE_DIR [--seed N]")
    ws = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 7
    years = int(sys.argv[sys.argv.index("--years") + 1]) if "--years" in sys.argv else 1
    r = random.Random(seed)
    os.makedirs(os.path.join(ws, "memory"), exist_ok=True)
    os.makedirs(os.path.join(ws, "knowledge"), exist_ok=True)
    dated = {}
    for where, fact, question, kind in FACTS:
        dated.setdefault(where, []).append((fact, question, kind))
    answers = []
    day = datetime.date(2026 - years, 1, 1)
    while day.year <= 2025:
        iso = day.isoformat()
        if iso in dated or r.random() < 0.88:
            lines = day_lines(r, day, heading=r.random() < 0.3)
            for fact, question, kind in dated.get(iso, []):
                body = [i for i, l in enumerate(lines) if l.startswith("- ")]
                at = r.choice(body) + 1 if body else len(lines)
                hhmm = lines[at - 1][2:7] if at > 0 and lines[at - 1].startswith("- ") else "12:00"
                lines.insert(at, f"- {hhmm} {fact}")
                answers.append({"question": question, "kind": kind, "fact": fact,
                                "file": f"memory/{iso}.md", "line": at + 1})
            with open(os.path.join(ws, "memory", f"{iso}.md"), "w") as f:
                f.write("\n".join(lines) + "\n")
        day += datetime.timedelta(days=1)
    files = {"MEMORY.md": {"Memory": ["Long-term notes about me, my family and my work."]}}
    files["MEMORY.md"].update({k: list(v) for k, v in MEMORY_FILLER.items()})
    for path, sections in KNOWLEDGE.items():
        files[path] = {k: list(v) for k, v in sections.items()}
    placed = []
    for where, items in dated.items():
        if "#" not in where:
            continue
        path, heading = where.split("#", 1)
        for fact, question, kind in items:
            section = files[path][heading]
            section.insert(r.randint(0, len(section)), fact)
            placed.append((path, fact, question, kind))
    for path, sections in files.items():
        out = []
        for i, (heading, body) in enumerate(sections.items()):
            out += [("# " if i == 0 else "## ") + heading, ""] + body + [""]
        with open(os.path.join(ws, path), "w") as f:
            f.write("\n".join(out))
        for p, fact, question, kind in placed:
            if p == path:
                answers.append({"question": question, "kind": kind, "fact": fact,
                                "file": path, "line": out.index(fact) + 1})
    with open(os.path.join(ws, "..", "answers.json"), "w") as f:
        json.dump(answers, f, indent=1)
    print(f"{len(answers)} questions, {len(os.listdir(os.path.join(ws, 'memory')))} daily logs")


if __name__ == "__main__":
    main()
