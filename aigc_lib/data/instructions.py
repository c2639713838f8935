"""Instructions and preferences built by rule from Shakespeare's plays, so every answer is checkable.

The fine-tuning chapter needs data whose right answers a program can check, so that "did fine-tuning help?" is a
measured number, not an impression. Two kinds:

* **instructions** (:func:`instruction_examples`): a task name, one line of verse, and the answer,
  in the format ``"<task>: <line>\\n@ "`` + ``"<answer>\\n"``. The tasks are ``first word``,
  ``last word`` (the rhyme word) and ``count words``; words are the line's blank-separated pieces
  with punctuation stripped from their ends. Each example fits the book's 64-character context.
* **speech openings** (:func:`speech_prompts`): a speaker heading as the plays write it,
  ``"\\nHAMLET.\\n"``, after which a model writes the speech's first line. The fine-tuning
  chapter prefers lines that ask a question (:func:`is_question`), a rule a program can check on any output.

Held-out examples come from the validation plays (:func:`~aigc_lib.data.load_shakespeare` splits
by whole plays), so no line, and no speaker, is in both.
"""
from __future__ import annotations

import random
import re
from collections import Counter

TASKS = ("first word", "last word", "count words")
PUNCTUATION = ".,;:!?-'\"()[]_"
MAX_LINE = 36  # lines of at most this many characters ...
MAX_EXAMPLE = 65  # ... and whole examples of at most this many: 64 inputs and the last target
HEADING = re.compile(r"^([A-Z][A-Z' ]+[A-Z])\.$")  # "HAMLET." or "FIRST CITIZEN."


def words(line: str) -> list[str]:
    """The line's words: blank-separated pieces with punctuation stripped from their ends."""
    return [w for w in (piece.strip(PUNCTUATION) for piece in line.split()) if w]


def answer(task: str, line: str) -> str:
    """The right answer to ``task`` for ``line``."""
    ws = words(line)
    if task == "first word":
        return ws[0]
    if task == "last word":
        return ws[-1]
    if task == "count words":
        return str(len(ws))
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


def prompt(task: str, line: str) -> str:
    """What the model reads; its answer follows and ends with a newline."""
    return f"{task}: {line}\n@ "


def verse_lines(text: str, min_chars: int = 16, max_chars: int = MAX_LINE) -> list[str]:
    """Lines of speech (no speaker headings, no stage directions) of ``min_chars`` to ``max_chars``
    characters with at least three words, in order of appearance, without repeats."""
    seen, out = set(), []
    for raw in text.splitlines():
        line = raw.strip()
        if (min_chars <= len(line) <= max_chars and len(words(line)) >= 3 and not HEADING.match(line)
                and not line.startswith(("[", "ACT", "SCENE", "Enter", "Exit", "Exeunt")) and line not in seen):
            seen.add(line)
            out.append(line)
    return out


def instruction_examples(text: str, n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``n`` examples ``(task, prompt, answer)`` from distinct lines of ``text``, tasks in turn, each
    at most ``MAX_EXAMPLE`` characters with its answer's newline."""
    lines = verse_lines(text)
    random.Random(seed).shuffle(lines)
    examples = []
    for line in lines:
        task = TASKS[len(examples) % len(TASKS)]
        example = (task, prompt(task, line), answer(task, line))
        if len(example[1]) + len(example[2]) + 1 <= MAX_EXAMPLE:
            examples.append(example)
        if len(examples) == n:
            return examples
    raise ValueError(f"the text has {len(examples)} usable lines, fewer than n={n}")


def speakers(text: str, n: int) -> list[str]:
    """The ``n`` speakers with the most speeches in ``text``, most frequent first."""
    counts = Counter(m.group(1) for line in text.splitlines() if (m := HEADING.match(line.strip())))
    if len(counts) < n:
        raise ValueError(f"the text has {len(counts)} speakers, fewer than n={n}")
    return [name for name, _ in counts.most_common(n)]


def speech_prompts(text: str, n: int) -> list[str]:
    """Speaker headings ``"\\nNAME.\\n"`` for the ``n`` most frequent speakers of ``text``."""
    return [f"\n{name}.\n" for name in speakers(text, n)]


def first_line(response: str) -> str:
    """A generated response up to (not including) its first newline."""
    return response.split("\n", 1)[0]


def is_question(response: str) -> bool:
    """The fine-tuning chapter's preference rule: the first line of the response ends with a question mark."""
    return first_line(response).rstrip().endswith("?")
