"""Captions built from class names, for every backbone (``--prompt`` replaces them)."""

from __future__ import annotations

from collections.abc import Sequence


def default_prompt(classes: Sequence[str]) -> str:
    """A plain caption naming the classes: ``["person", "dog"]`` -> ``"A video of a person and a dog."``.

    Underscores become spaces and "an" is used before a vowel; three or more names are joined as "a, b and c".
    """
    names = [c.replace("_", " ").strip() for c in classes if c.strip()]
    if not names:
        return "A video."
    phrases = [f"{'an' if n[0].lower() in 'aeiou' else 'a'} {n}" for n in names]
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"A video of {body}."
