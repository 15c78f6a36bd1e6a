"""What the reader leaves out, and the limits that stop a run reading the wrong thing.

Two kinds of left-out records, both counted by reason (``"<scope>: <reason>"``, the scope being a task, or
``instruction`` for a manual row whose task cannot be told):

- **dropped**: a record that should have been there but is unusable (its image is missing, its answer holds no box,
  an ``ImageContent`` label, a fake without its original, ...). The first few of each reason are logged with their
  file, record and field. ``data.strict=true`` makes every drop an error instead; ``data.max_drop_fraction`` fails
  the run when a scope drops more than that share of its records (a systematic mismatch, such as every image path
  wrong, must not silently train on nothing).
- **skipped**: left out by a documented rule of the record semantics (a detection row outside
  ``data.object_step_classes``, a ``[detection-collect]`` row that MiniGPT-v2 never answered, ...). Counted and shown,
  never an error and never part of the drop fraction.

File-level problems (unreadable JSON, a missing root, no manual found) are errors, not drops.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from lego_arta.data.records import DataError, where

log = logging.getLogger(__name__)

LOGGED_PER_REASON = 3  # drops of one reason logged with their file, record and field
LISTED_ERRORS = 20  # problems listed in one DataError


class DropLog:
    """Counts drops and skips by reason, keeps an example of each, and enforces ``strict`` and the drop limit."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.dropped: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.examples: dict[str, str] = {}  # reason -> the first drop's "file: record: field: detail"
        self.errors: list[str] = []  # file-level problems, and every drop when strict

    def drop(
        self,
        scope: str,
        reason: str,
        file: object,
        *,
        record: str | int | None = None,
        field: str | None = None,
        detail: str = "",
    ) -> None:
        """Count one dropped record of ``scope`` (an error instead when strict)."""
        key = f"{scope}: {reason}"
        message = where(file, record=record, field=field) + (detail or reason)
        if self.strict:
            self.errors.append(f"{message} (dropped as '{key}'; data.strict=true makes every drop an error)")
            return
        self.dropped[key] += 1
        self.examples.setdefault(key, message)
        if self.dropped[key] <= LOGGED_PER_REASON:
            log.warning("dropped (%s): %s", key, message)

    def skip(self, scope: str, reason: str, n: int = 1) -> None:
        """Count ``n`` records of ``scope`` left out by a rule of the record semantics."""
        self.skipped[f"{scope}: {reason}"] += n

    def error(self, file: object, problem: str, *, record: str | int | None = None, field: str | None = None) -> None:
        """Note a file-level problem; ``raise_errors`` raises them all at once."""
        self.errors.append(where(file, record=record, field=field) + problem)

    def raise_errors(self, root: object, hint: str = "") -> None:
        """Raise one ``DataError`` listing the problems noted so far (the first ``LISTED_ERRORS`` of them)."""
        if not self.errors:
            return
        listed = self.errors[:LISTED_ERRORS]
        more = len(self.errors) - len(listed)
        head = f"{len(self.errors)} problems in the dataset at {root}:\n" if len(self.errors) > 1 else ""
        tail = f"\n... and {more} more" if more else ""
        raise DataError(head + "\n".join(listed) + tail + (f"\n{hint}" if hint else ""))

    def check_fraction(self, kept: Mapping[str, int], max_fraction: float) -> None:
        """Fail when a scope dropped more than ``max_fraction`` of its records (kept + dropped).

        ``kept`` maps each scope to its records kept (for ``instruction``: the manual rows read). The error names
        the scope's top reasons, each with its count and one example (file, record, field).
        """
        by_scope: dict[str, int] = Counter()
        for key, n in self.dropped.items():
            by_scope[key.split(": ", 1)[0]] += n
        failing = []
        for scope, n in sorted(by_scope.items()):
            total = kept.get(scope, 0) + n
            if total and n / total > max_fraction:
                failing.append(f"{scope}: {n} of {total} records dropped ({n / total:.0%})")
                top = sorted(
                    ((c, k) for k, c in self.dropped.items() if k.startswith(f"{scope}: ")),
                    key=lambda t: (-t[0], t[1]),
                )
                failing += [f"  {c} x '{k}', e.g. {self.examples[k]}" for c, k in top[:5]]
        if failing:
            raise DataError(
                f"more than data.max_drop_fraction={max_fraction} of a task's records were dropped: is data.root the "
                "LEGO-ARTA download (or its ARTA_LEGO/ folder)?\n" + "\n".join(failing) + "\nFix the data, or raise "
                "data.max_drop_fraction to accept it (data.strict=true lists every dropped record as an error)."
            )
