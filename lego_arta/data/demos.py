"""Dynamic few-shot demo selection (the study's rules), from the training split only.

- object: a same-manual demo with as many boxes as the record's answer (only with ``match_box_count``: this peeks
  at the answer), else any same-manual object demo, else any object demo;
- grounding: the previous step of the same manual, else any same-manual grounding demo, else any;
- state: two demos, one "Yes" and one "No", from the same manual when it has both, else from anywhere.

A record is never its own demo, nor is any record of its group. The choice among candidates is deterministic
from (seed, record id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from lego_arta.data.records import Record
from lego_arta.data.split import seeded_rng


class DemoPool:
    """The training records, indexed for demo selection."""

    def __init__(self, records: Iterable[Record], *, match_box_count: bool = True, seed: int = 0) -> None:
        self.records = list(records)
        self.match_box_count = match_box_count
        self.seed = seed
        self._by_task: dict[str, list[Record]] = defaultdict(list)
        self._by_manual: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for record in self.records:
            self._by_task[record.task].append(record)
            self._by_manual[(record.task, record.manual_id)].append(record)

    def select(self, record: Record) -> list[Record]:
        """The demos for ``record`` (one; two for state), or [] when the pool has none for its task."""
        rng = seeded_rng("demo", self.seed, record.id)

        def usable(candidates: Iterable[Record]) -> list[Record]:
            return [c for c in candidates if c.group_id != record.group_id and c.id != record.id]

        same_manual = usable(self._by_manual[(record.task, record.manual_id)])
        anywhere = usable(self._by_task[record.task])
        if record.task == "state":
            demos = []
            for answer in ("Yes", "No"):
                pick = [c for c in same_manual if c.solution == answer] or [
                    c for c in anywhere if c.solution == answer
                ]
                if pick:
                    demos.append(rng.choice(pick))
            rng.shuffle(demos)
            return demos
        tiers: list[list[Record]] = []
        if record.task == "object" and self.match_box_count:
            count = len(record.boxes())
            tiers.append([c for c in same_manual if len(c.boxes()) == count])
        if record.task == "grounding":
            earlier = [c for c in same_manual if c.step_num < record.step_num]
            if earlier:
                last = max(c.step_num for c in earlier)
                tiers.append([c for c in earlier if c.step_num == last])
        tiers += [same_manual, anywhere]
        for tier in tiers:
            if tier:
                return [rng.choice(tier)]
        return []
