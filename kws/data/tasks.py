"""The vocabulary: the keywords, the special classes and the tasks (which words a model tells
apart). No imports from the rest of kws: kws.config validates `data.task` against TASKS and
kws.data.dataset labels clips with them.
"""

from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN, BACKGROUND = "_silence_", "_unknown_", "_background_noise_"
WORDS_35 = KEYWORDS + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual")


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]

    def label(self, word: str) -> int | None:
        """Class index of a word, or None if the task does not use it."""
        if word in self.classes:
            return self.classes.index(word)
        if UNKNOWN in self.classes and word not in (SILENCE, BACKGROUND):
            return self.classes.index(UNKNOWN)
        return None


TASKS = {
    "v2-12": Task("v2-12", KEYWORDS + (SILENCE, UNKNOWN)),
    "35": Task("35", WORDS_35),
}
