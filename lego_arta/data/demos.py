"""Dynamic few-shot demo selection (the study's rules), from the training split only.

- object: a same-manual demo with as many boxes as the record's answer (only with ``match_box_count``: this peeks
  at the answer), else any same-manual object demo, else any object demo;
- grounding: the previous step of the same manual, else any same-manual grounding demo, else any;
- state: two demos, one "Yes" and one "No". ``state_pair="related"`` (the study's): a real image of the same manual,
  then one of its own fakes (else another fake of the manual); ``"independent"``: the Yes and the No drawn
  separately, in random order. Either falls back to other manuals when the manual lacks one.

A record is never its own demo, nor is any record of its group. The choice among candidates is deterministic
from (seed, record id).

The study's rules (BPerju/LEGO-R1 ``Iteration_2/Qwen2.5-VL-DATA_WRANGLING.ipynb``, ``pick_demo``): grounding = the
step before in the same manual; object = a same-manual demo with as many boxes, else any same-manual one; state =
a random real image of the manual and a fake of that image (``related_fakes``), else any fake of the manual. Where
the study had no demo this falls back further (any same-manual grounding demo, then any demo of the task), and it
never gives a record a demo of its own group (the study could, for training prompts; test records never can, as
demos come from the training split and groups never cross it).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

from lego_arta.data.records import DataError, Record
from lego_arta.data.split import seeded_rng

STATE_PAIR = ("related", "independent")


class DemoPool:
    """The training records, indexed for demo selection."""

    def __init__(self, records: Iterable[Record], *, match_box_count: bool, state_pair: str, seed: int) -> None:
        if state_pair not in STATE_PAIR:
            raise DataError(f"data.demos.state_pair: {state_pair!r} is not one of {list(STATE_PAIR)}")
        self.records = list(records)
        self.match_box_count = match_box_count
        self.state_pair = state_pair
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
        if record.task == "state" and self.state_pair == "related":
            return _related_pair(same_manual, anywhere, rng)
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


def _related_pair(same_manual: list[Record], anywhere: list[Record], rng: random.Random) -> list[Record]:
    """The study's state pair: a real image ("Yes"), then a fake of it, else another fake of its manual."""
    yes = [c for c in same_manual if c.solution == "Yes"] or [c for c in anywhere if c.solution == "Yes"]
    if not yes:
        no = [c for c in same_manual if c.solution == "No"] or [c for c in anywhere if c.solution == "No"]
        return [rng.choice(no)] if no else []
    real = rng.choice(yes)
    fakes = [c for c in anywhere if c.solution == "No"]
    tiers = (
        [c for c in fakes if c.group_id == real.group_id and c.manual_id == real.manual_id],
        [c for c in fakes if c.manual_id == real.manual_id],
        fakes,
    )
    pick = next((tier for tier in tiers if tier), [])
    return [real, rng.choice(pick)] if pick else [real]
