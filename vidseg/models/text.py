"""Class names as the user gives them, and the captions built from them, for every backbone (``--prompt``
replaces the caption)."""

from __future__ import annotations

from collections.abc import Sequence

from vidseg.errors import ConfigError


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


def check_classes(classes: Sequence[str], *, what: str = "class",
                  example: str = "--classes person dog") -> list[str]:
    """Strip class names and reject empty lists, blank names and duplicates with one clear line (``what`` and
    ``example`` word it for the command: ``vidseg localize`` asks for concepts)."""
    names = [c.strip() for c in classes]
    if not names:
        raise ConfigError(f"no {'classes' if what == 'class' else what + 's'} given; pass the names, e.g. {example}")
    if any(not n for n in names):
        raise ConfigError(f"a {what} name is blank; pass non-empty names, e.g. {example}")
    seen: set[str] = set()
    for n in names:
        if n.lower() in seen:
            raise ConfigError(f"{what} {n!r} is given twice; list each {what} once")
        seen.add(n.lower())
    return names
