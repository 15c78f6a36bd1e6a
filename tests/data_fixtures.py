"""Tiny LEGO-ARTA downloads in the real layout and JSON schema (as the public evidence shows them), under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from omegaconf import OmegaConf
from PIL import Image

from lego_arta.config import ROOT
from lego_arta.data import ReadOptions, ReadResult, Record, read_dataset

MANUAL = "lego-76946-blue-beta-velociraptor-capture-readscr"
CLUSTER = "/gpfs/home4/someone/MiniGPT/ARTA_LEGO"  # an absolute prefix from the authors' cluster, to re-root
PAGE = "76946%20Velociraptor"  # page images are named after the image URL: spaces URL-encoded
DATA_CONF = ROOT / "conf" / "data" / "lego_arta.yaml"
# MiniGPT-v2 answers as the construction code stores them: a space before the box, <delim> between the boxes of one
# label, free text after a box, a label without a box
ANSWER_TWO_BOXES = "<p>1x2 white beam</p> {<10><20><30><40>}<delim>{<50><60><70><80>}"
ANSWER_LOOSE = "<p>2x2 green plate</p> {<5><5><25><25>} at the top<p>1x1 round</p> {<30><30><40><40>}<p>axle</p>"


def data_options(**overrides: Any) -> ReadOptions:
    """The reader options of ``conf/data/lego_arta.yaml`` (the one source of their defaults), with ``overrides``."""
    node = OmegaConf.to_container(OmegaConf.load(DATA_CONF))
    assert isinstance(node, dict)
    return ReadOptions.from_config({**node, **overrides})


def read(root: Path, **overrides: Any) -> ReadResult:
    """``read_dataset(root)`` with the YAML defaults and ``overrides`` (``data.<key>`` values)."""
    return read_dataset(root, data_options(**overrides))


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path


def vlm(
    img: str,
    task_label: str = "[detection]",
    query: str = "Find a 1x2 white beam",
    output: str = ANSWER_TWO_BOXES,
    step_class: str | None = "step",
    step_num: int | str | None = 1,
) -> dict[str, Any]:
    """A VLM block; ``step_class`` / ``step_num`` None: left out (the reader takes them from the image's name)."""
    block: dict[str, Any] = {"img_path": img, "task_label": task_label, "query": query, "MiniGPTv2_output": output}
    if step_class is not None:
        block["step_class"] = step_class
    if step_num is not None:
        block["step_num"] = step_num
    return block


def instruction(iid: int, text: Any, vlm_block: dict[str, Any] | None) -> dict[str, Any]:
    """A manual row; ``entities`` only when it has text (as ``dataset_pre.py`` writes it), no VLM when None."""
    ins: dict[str, Any] = {"instruction_id": iid, "text": text}
    if text != "No text found":
        ins["entities"] = [[{"verb": str(text).split()[0].strip("[']")}]]
    if vlm_block is not None:
        ins["VLM"] = vlm_block
    return ins


def write_manual(root: Path, instructions: list[dict[str, Any]], manual: str = MANUAL, suffix: str = "_new") -> Path:
    """``json_data/lego/<manual><suffix>.json``, pretty-printed as the construction code writes it."""
    path = root / "json_data" / "lego" / f"{manual}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    manual_json = {"manual_id": manual, "manual_type": "lego", "instructions": instructions}
    path.write_text(json.dumps(manual_json, indent=4, ensure_ascii=False))
    return path


def real_tree(download: Path, manual: str = MANUAL, page: str = PAGE) -> Path:
    """A real-shaped download: ``<download>/ARTA_LEGO/`` with one manual, as the public evidence shows it.

    Rows: a cover (fullscreeneop, ImageContent: skipped), an eop "Find" row (two boxes, relative img_path), step 1
    (absolute cluster img_path with %20 and %23, the file on disk decoded), an eop "Find" row without step class or
    number (taken from the name; free text and a label without a box in its answer; no object_dataset copy), step 2,
    a [detection-collect] row whose answer stayed "None" (skipped), and an end page. Step 1's real state image is
    only in lego/<m>/images/, step 2's also in step_dataset/. A crawler-format ``<manual>.json`` sits beside the
    ``_new`` file (skipped). Returns the ``ARTA_LEGO`` folder.
    """
    root = download / "ARTA_LEGO"
    images, objects = root / "lego" / manual / "images", root / "object_dataset" / "lego" / manual
    state = root / "step_dataset" / "lego" / manual
    plain = unquote(page)
    step1, step2 = f"{plain}#1_01_step", f"{page}_02_step"  # on disk: step 1 decoded, step 2 encoded
    for name in ("cover.png", f"{page}_00_eop.png", f"{step1}.png", f"{page}_01_eop.png", f"{step2}.png"):
        write_image(images / name)
    write_image(objects / f"{page}_00_eop.png", (0, 0, 200))
    for n in (1, 2, 3):
        write_image(state / f"{page}%231_01_step_fake{n}.png", (n, 0, 0))  # step 1: encoded fakes, original elsewhere
        write_image(state / f"{step2}_fake{n}.png", (0, n, 0))
    write_image(state / f"{step2}.png", (0, 9, 0))
    absolute, relative = f"{CLUSTER}/lego/{manual}/images", f"ARTA_LEGO/lego/{manual}/images"
    write_manual(
        root,
        [
            instruction(
                0,
                "No text found",
                vlm(
                    f"{absolute}/cover.png",
                    query="Find a ImageContent",
                    output="<p>ImageContent</p> {<0><0><99><99>}",
                    step_class="fullscreeneop",
                    step_num="None",
                ),
            ),
            instruction(
                1, ["Find a 1x2 white beam"], vlm(f"{relative}/{page}_00_eop.png", step_class="eop", step_num=0)
            ),
            instruction(
                2,
                ["Attach the 2x4 red brick", "to the base."],
                vlm(f"{absolute}/{page}%231_01_step.png", task_label="None", query="None", output="None", step_num=1),
            ),
            instruction(
                3,
                ["Find a 2x2 green plate", "and a 1x1 round"],
                vlm(
                    f"{absolute}/{page}_01_eop.png",
                    query="Find a 2x2 green plate",
                    output=ANSWER_LOOSE,
                    step_class=None,
                    step_num=None,
                ),
            ),
            instruction(
                4,
                ["Add the 2x2 green plate."],
                vlm(f"{relative}/{step2}.png", "None", "None", "None", step_class=None, step_num=None),
            ),
            instruction(
                5,
                ["Collect 2x 1x1 round"],
                vlm("None", "[detection-collect]", "Collect 2x 1x1 round", "None", "eop", "None"),
            ),
            instruction(6, "No text found", vlm("None", "None", "None", "None", "eop", "None")),
        ],
        manual,
    )
    crawler = [{"instruction_id": 0, "text": "Attach the 2x4 red brick", "img_url": "https://example.org/a.png"}]
    write_manual(root, crawler, manual, suffix="")
    return root


def make_records(num_manuals: int = 10, steps: int = 6, fakes: int = 3) -> list[Record]:
    """In-memory records of all tasks (no images): per manual and step one grounding, one object, one state group."""
    records = []
    for m in range(num_manuals):
        manual = f"lego-{m:05d}-test"
        for k in range(1, steps + 1):
            at = {"manual_id": manual, "image": f"/data/{manual}/step_{k}.png", "step_num": k}
            gid = f"{manual}/grounding/{k}"
            records.append(
                Record(
                    id=gid,
                    task="grounding",
                    group_id=gid,
                    query="q",
                    solution=f"text {k}",
                    context=f"text {k - 1}",
                    **at,
                )
            )
            oid = f"{manual}/object/{k}"
            n_boxes = 1 + (k + m) % 3
            boxes = ", ".join(
                f'{{"bbox_2d": [{i}, {i}, {i + 10}, {i + 10}], "label": "part"}}' for i in range(n_boxes)
            )
            records.append(
                Record(id=oid, task="object", group_id=oid, query="Find a part", solution=f"[{boxes}]", **at)
            )
            group = f"{manual}/state/step_{k}"
            records.append(Record(id=group, task="state", group_id=group, query="q", solution="Yes", **at))
            for n in range(1, fakes + 1):
                records.append(
                    Record(id=f"{group}_fake{n}", task="state", group_id=group, query="q", solution="No", **at)
                )
    return records
