"""The vocabulary: the keywords, the special classes and the tasks (which words a model tells
apart). No imports from the rest of kws: kws.config validates `data.task` with `make_task`
and kws.data.dataset labels clips with it.

    v2-12   yes no up down left right on off stop go + _silence_ + _unknown_ (the benchmark)
    35      the 35 words of Speech Commands v2, no silence, no unknown
    wake    `data.keywords` (one or more Speech Commands words) + _background_: everything
            else (other words, silence, running speech, noise) is background
"""

from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN, BACKGROUND = "_silence_", "_unknown_", "_background_noise_"
OTHER = "_background_"   # a wake-word model's one class for "no keyword"
WORDS_35 = KEYWORDS + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual")


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[str, ...]
    other: str | None = None     # the class of every word the task does not name (None: dropped)
    chosen: tuple[str, ...] = ()  # the data.keywords it was made from (task wake)

    def label(self, word: str) -> int | None:
        """Class index of a word, or None if the task does not use it."""
        if word in self.classes:
            return self.classes.index(word)
        if self.other is None or word == BACKGROUND:
            return None
        return self.classes.index(self.other)

    @property
    def keywords(self) -> list[int]:
        """Indices of the classes a detector fires on (the words; not _silence_, _unknown_...)."""
        return keyword_indices(self.classes)


def keyword_indices(classes) -> list[int]:
    """The classes that are words (special classes are named _like_this_)."""
    return [i for i, c in enumerate(classes) if not c.startswith("_")]


def keyword_words(classes) -> list[str]:
    return [classes[i] for i in keyword_indices(classes)]


TASKS = {
    "v2-12": Task("v2-12", KEYWORDS + (SILENCE, UNKNOWN), UNKNOWN),
    "35": Task("35", WORDS_35),
}
TASK_NAMES = (*TASKS, "wake")


def make_task(name: str, keywords=()) -> Task:
    """The task of a config's `data.task` and `data.keywords`; ValueError says what is wrong."""
    keywords = tuple(keywords or ())
    if name not in TASK_NAMES:
        raise ValueError(f"data.task must be one of {', '.join(TASK_NAMES)}, not {name!r}")
    if name != "wake":
        if keywords:
            raise ValueError(f"data.keywords is for data.task: wake (task {name} has its own words)")
        return TASKS[name]
    if not keywords:
        raise ValueError("data.task: wake needs data.keywords: [WORD, ...] (Speech Commands words)")
    unknown = [w for w in keywords if w not in WORDS_35]
    if unknown or len(set(keywords)) != len(keywords):
        raise ValueError(f"data.keywords: {', '.join(unknown) or 'a word twice'}: give distinct "
                         f"Speech Commands words ({' '.join(WORDS_35)})")
    return Task("wake", keywords + (OTHER,), OTHER, keywords)


def task_of_classes(classes) -> Task:
    """The task a model's class list belongs to (for a model file that names no task)."""
    classes = tuple(classes)
    for task in TASKS.values():
        if task.classes == classes:
            return task
    if classes and classes[-1] == OTHER:
        return make_task("wake", classes[:-1])
    raise ValueError(f"classes {list(classes)} are not those of any task")
