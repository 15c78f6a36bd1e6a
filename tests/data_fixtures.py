"""Tiny LEGO-ARTA trees in the published layout and JSON schema, written under a test's tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from lego_arta.data import Record

MANUAL = "lego-76946-blue-beta-velociraptor-capture-readscr"
CLUSTER = "/cluster/home/someone/arta"  # a foreign prefix the reader must re-root


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


def vlm(
    img: str,
    task_label: str = "[detection]",
    query: str = "Find a 1x2 white beam",
    output: str = "<p>1x2 white beam</p>{<10><20><30><40>}",
    step_class: str = "step",
    step_num: int | str = 1,
) -> dict[str, Any]:
    return {
        "img_path": img,
        "task_label": task_label,
        "query": query,
        "MiniGPTv2_output": output,
        "step_class": step_class,
        "step_num": step_num,
    }


def instruction(iid: int, text: Any, vlm_block: dict[str, Any] | None) -> dict[str, Any]:
    ins: dict[str, Any] = {"instruction_id": iid, "text": text, "entities": [[{"verb": "attach"}]]}
    if vlm_block is not None:
        ins["VLM"] = vlm_block
    return ins


def write_manual(root: Path, instructions: list[dict[str, Any]], manual: str = MANUAL) -> Path:
    path = root / "json_data" / "lego" / f"{manual}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"manual_id": manual, "manual_type": "lego", "instructions": instructions}))
    return path


def tiny_tree(root: Path, manual: str = MANUAL) -> Path:
    """One manual: a cover page (ImageContent), two steps, an end page, a state group and a stray fake."""
    images = root / "lego" / manual / "images"
    for name in ("cover.png", "step_1.png", "step_2.png"):
        write_image(images / name)
    write_image(root / "object_dataset" / "lego" / manual / "step_2.png", (0, 0, 200))
    state = root / "step_dataset" / "lego" / manual
    for name in ("step_1.png", "step_1_fake1.png", "step_1_fake2.png", "step_1_fake3.png", "step_9_fake1.png"):
        write_image(state / name)
    prefix = f"{CLUSTER}/lego/{manual}/images"
    write_manual(
        root,
        [
            instruction(
                0,
                "No text found",
                vlm(
                    f"{prefix}/cover.png",
                    query="Find a ImageContent",
                    output="<p>ImageContent</p>{<0><0><99><99>}",
                    step_class="fullscreeneop",
                    step_num="None",
                ),
            ),
            instruction(
                1,
                ["Attach the 2x4 red brick", "to the base."],
                vlm(f"{prefix}/step_1.png", task_label="None", query="None", output="None", step_num=1),
            ),
            instruction(
                2,
                ["Add the 1x2 white beam."],
                vlm(
                    f"{prefix}/step_2.png",
                    task_label="[detection-collect]",
                    query="Collect a 1x2 white beam",
                    output="<p>1x2 white beam</p>{<10><20><30><40>}<delim>{<50><60><70><80>}",
                    step_num=2,
                ),
            ),
            instruction(3, "No text found", vlm("None", "None", "None", "None", "eop", "None")),
        ],
        manual,
    )
    return root


def make_records(num_manuals: int = 10, steps: int = 6, fakes: int = 3) -> list[Record]:
    """In-memory records of all tasks (no images): per manual and step one grounding, one object, one state group."""
    records = []
    for m in range(num_manuals):
        manual = f"lego-{m:05d}-test"
        for k in range(1, steps + 1):
            img = f"/data/{manual}/step_{k}.png"
            gid = f"{manual}/grounding/{k}"
            records.append(Record(gid, "grounding", manual, gid, img, "q", f"text {k}", f"text {k - 1}", k))
            oid = f"{manual}/object/{k}"
            n_boxes = 1 + (k + m) % 3
            boxes = ", ".join(
                f'{{"bbox_2d": [{i}, {i}, {i + 10}, {i + 10}], "label": "part"}}' for i in range(n_boxes)
            )
            records.append(Record(oid, "object", manual, oid, img, "Find a part", f"[{boxes}]", "", k))
            group = f"{manual}/state/step_{k}"
            records.append(Record(group, "state", manual, group, img, "q", "Yes", "", k))
            for n in range(1, fakes + 1):
                records.append(Record(f"{group}_fake{n}", "state", manual, group, img, "q", "No", "", k))
    return records
