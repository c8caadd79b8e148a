"""`sav-router review`: work the escalation queue in the terminal.

For each request: its text, why it was escalated (or that it is an audit
sample), the model's numbered suggestions with scores. The reviewer types a
number, a label, `o` (out of scope: none of these), `s` (skip), `q` (quit)
or `?` (help). Answers become
annotations through the queue (`teach` for escalations, `check` with source
`audit` for audit samples, which are never trained on).

Audit samples are shown blind: their candidates in alphabetical order,
without scores or the routed label, so the reviewer is not anchored on the
model's answer and the precision estimate is not biased upwards. A re-check
of an earlier annotation (`review --queue recheck`, a doubt from `doubts`) is
shown blind the same way, and said to be a re-check: neither the earlier
label nor a model suggestion is shown.

Input and output are injected functions, so the loop runs without a TTY.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sav_router.core.labels import out_of_scope_label
from sav_router.review.items import ReviewItem, annotation_row
from sav_router.review.queue import ReviewQueue

HELP = """\
  1..9      pick that suggestion
  a label   type any label (an unknown one asks for confirmation)
  o         out of scope: none of these (spam, chit-chat, another department's or a new
            kind of request); never routed, and it teaches the router to escalate such requests
  s         skip: leave it for later (or for another reviewer)
  q         quit: answers so far are saved, this request stays queued
  ?         this help"""


@dataclass
class SessionResult:
    answered: int = 0
    skipped: int = 0
    quit: bool = False

    def summary(self) -> str:
        return f"{self.answered} answered, {self.skipped} skipped" + (" (quit)" if self.quit else "")


def _printable(text: str) -> str:
    """Request text shown as data: control characters (terminal escapes) are neutralised."""
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else "\ufffd" for ch in text)


def choices_for(item: ReviewItem) -> list[tuple[str, float | None]]:
    """Numbered candidates: the model's ranking with scores, or (audit) alphabetical without them."""
    if item.audit:
        return [(label, None) for label in sorted({label for label, _ in item.top_k})]
    return list(item.top_k)


def show(item: ReviewItem, choices: Sequence[tuple[str, float | None]], say: Callable[[str], None], position: int) -> None:
    header = f"[{position}] request {_printable(item.id)}" + (f"  (model {item.model_version})" if item.model_version else "")
    say("")
    say(header)
    if item.recheck_split:
        say("    re-check of an earlier annotation, blind: what is the right label? (the earlier label is not shown)")
    elif item.audit:
        say("    audit sample: a routed request, checked blind (what is the right label?)")
    else:
        say(f"    escalated: {', '.join(item.reasons) or 'no reason recorded'}")
    say("")
    for line in _printable(item.text).splitlines() or [""]:
        say(f"    {line}")
    say("")
    width = max([len(label) for label, _ in choices] + [1])
    for number, (label, score) in enumerate(choices, start=1):
        say(f"  {number}. {label:<{width}}" + (f"  {score:.2f}" if score is not None else ""))
    say("  number | label | o out of scope | s skip | q quit | ? help")


def _known_match(typed: str, known: Sequence[str]) -> str | None:
    if typed in known:
        return typed
    folded = [label for label in known if label.casefold() == typed.casefold()]
    return folded[0] if len(folded) == 1 else None


class _Quit(Exception):
    pass


def _ask(ask: Callable[[str], str], prompt: str) -> str:
    try:
        return ask(prompt).strip()
    except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C: same as q, nothing is lost
        raise _Quit from None


def _answer(item: ReviewItem, choices: Sequence[tuple[str, float | None]], known: Sequence[str], ask: Callable[[str], str], say: Callable[[str], None]) -> str | None:
    """The chosen label, or None for skip; raises _Quit."""
    while True:
        typed = _ask(ask, "answer> ")
        if not typed:
            continue
        command = typed.lower()
        if command == "q":
            raise _Quit
        if command == "s":
            return None
        if command == "o" or typed == out_of_scope_label():
            return out_of_scope_label()
        if command in ("?", "h", "help"):
            say(HELP)
            continue
        if typed.isdigit():
            number = int(typed)
            if 1 <= number <= len(choices):
                return choices[number - 1][0]
            say(f"  no suggestion {number} (1..{len(choices)}); type a label instead" if choices else "  no suggestion: type a label")
            continue
        match = _known_match(typed, known)
        if match is not None:
            return match
        confirm = _ask(ask, f"  {typed!r} is not a known label; use it anyway? [y/N] ").lower()
        if confirm in ("y", "yes"):
            return typed


def run_session(
    queue: ReviewQueue,
    *,
    known_labels: Sequence[str] | None = None,
    ask: Callable[[str], str] | None = None,
    say: Callable[[str], None] | None = None,
    limit: int | None = None,
    reviewer: str | None = None,
) -> SessionResult:
    """Review until the queue is empty, `limit` items were handled, or the reviewer quits."""
    ask, say = ask or input, say or print  # looked up at call time: tests and wrappers may replace them
    result = SessionResult()
    while limit is None or result.answered + result.skipped < limit:
        item = queue.next_item()
        if item is None:
            say("\nnothing left to review")
            break
        choices = choices_for(item)
        # Known labels: the model's; without a model, whatever this request was scored on.
        known = list(known_labels) if known_labels else [label for label, _ in item.top_k] + ([item.label] if item.label else [])
        show(item, choices, say, result.answered + result.skipped + 1)
        try:
            label = _answer(item, choices, known, ask, say)
        except _Quit:
            queue.release(item)
            result.quit = True
            break
        if label is None:
            queue.skip(item)
            result.skipped += 1
        else:
            queue.ack(item, annotation_row(item, label, reviewer=reviewer))
            result.answered += 1
    return result


def known_labels_for(model: str | None, workspace) -> list[str] | None:
    """Labels of --model, else of the production model; None when neither is there."""
    from sav_router.core.bundle import BundleError, read_manifest
    from sav_router.loop.workspace import RegistryError

    if model is not None:
        return list(read_manifest(model).labels)  # an explicit bundle that is not one is a usage error
    try:
        return list(read_manifest(workspace.production_dir()).labels)
    except (RegistryError, BundleError):
        return None
