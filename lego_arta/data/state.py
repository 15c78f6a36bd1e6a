"""State-detection records: each real assembly image ("Yes") with its wrong-state fakes ("No"), one group each.

The study's rules (BPerju/LEGO-R1 ``Iteration_2/Qwen2.5-VL-DATA_WRANGLING.ipynb``, ``_load_qwen_rows``,
``orig_key`` and ``build_conversation``; ``Iteration_1/Qwen2.5-VL-Inference.ipynb`` the same):

- a fake is named ``<original>_fake<N>`` and sits under ``step_dataset/lego/<manual>/``; its answer is "No", the
  real image's "Yes";
- the real image of a fake is taken from ``lego/<manual>/images/<original>``; it may also sit next to its fakes in
  ``step_dataset/``. Both places are looked in: ``data.state_original`` says which one wins when both hold it
  (``images``, the study's, or ``step_dataset``);
- a group is the real image and its fakes, keyed by the original's *file name* alone, so the same page in two
  versions of a manual (``...-readscr``, ``...-mobile``) is one group and never crosses the split
  (``data.state_group_by: file``, the study's); ``manual`` keys groups by manual and file name.

A fake whose original is in neither place is dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from lego_arta.data.drops import DropLog
from lego_arta.data.images import rel_path
from lego_arta.data.records import STATE_QUERY, DataError, Record

FAKE = re.compile(r"^(?P<original>.+)_fake(?P<n>\d+)$")
STATE_ORIGINAL = ("images", "step_dataset")
STATE_GROUP_BY = ("file", "manual")

Index = Mapping[tuple[str, str], Path]


def original_stem(stem: str) -> str:
    """The stem of a fake's original (``p_3_step_fake2`` -> ``p_3_step``); other stems unchanged."""
    match = FAKE.match(stem)
    return match["original"] if match else stem


def state_group(manual: str, stem: str, group_by: str) -> str:
    """The group id of a state image of ``manual`` (a real one or a fake) under ``data.state_group_by``."""
    if group_by not in STATE_GROUP_BY:
        raise DataError(f"data.state_group_by: {group_by!r} is not one of {list(STATE_GROUP_BY)}")
    original = original_stem(stem)
    return f"state/{original}" if group_by == "file" else f"{manual}/state/{original}"


def read_state(
    state_images: Index,
    step_images: Index,
    step_nums: Mapping[tuple[str, str], int],
    *,
    original_from: str,
    group_by: str,
    drops: DropLog,
    root: Path,
) -> list[Record]:
    """The state records from the images under ``step_dataset/`` (``state_images``) and ``lego/`` (``step_images``).

    Both indexes map (manual, URL-decoded stem) to a path; ``step_nums`` gives each step image's step number.
    """
    if original_from not in STATE_ORIGINAL:
        raise DataError(f"data.state_original: {original_from!r} is not one of {list(STATE_ORIGINAL)}")
    places = (step_images, state_images) if original_from == "images" else (state_images, step_images)
    fakes: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    listed: set[tuple[str, str]] = set()  # real images listed under step_dataset/
    for (manual, stem), path in state_images.items():
        match = FAKE.match(stem)
        if match:
            fakes.setdefault((manual, match["original"]), []).append((int(match["n"]), path))
        else:
            listed.add((manual, stem))
    records: list[Record] = []
    for key in sorted(listed | set(fakes)):
        manual, stem = key
        original = next((place[key] for place in places if key in place), None)
        if original is None:
            for _, path in sorted(fakes[key]):
                detail = f"no {stem}.* in lego/{manual}/images/ nor in step_dataset/lego/{manual}/"
                drops.drop("state", "fake without its original", rel_path(path, root), detail=detail)
            continue
        group = state_group(manual, stem, group_by)
        rid = f"{manual}/state/{stem}"
        step_num = step_nums.get(key, 0)
        records.append(_state_record(rid, manual, group, original, "Yes", step_num))
        for n, path in sorted(fakes.get(key, [])):
            records.append(_state_record(f"{rid}_fake{n}", manual, group, path, "No", step_num))
    return records


def _state_record(rid: str, manual: str, group: str, image: Path, answer: str, step_num: int) -> Record:
    return Record(
        id=rid,
        task="state",
        manual_id=manual,
        group_id=group,
        image=str(image),
        query=STATE_QUERY,
        solution=answer,
        step_num=step_num,
    )
