"""Read back an offline W&B run's ``.wandb`` file (what ``wandb sync`` would upload), for tests.

wandb 0.31 no longer ships a Python reader. The file is a 7-byte header (``:W&B``, magic, version) followed by
LevelDB-log records in 32 KiB blocks (4-byte CRC, 2-byte length, 1-byte type: full / first / middle / last), each
carrying one protobuf ``Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    pos, chunks = _HEADER, []
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            break
        body = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield body
        elif kind == _FIRST:
            chunks = [body]
        elif kind == _MIDDLE:
            chunks.append(body)
        elif kind == _LAST:
            chunks.append(body)
            yield b"".join(chunks)


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """``{"history": [{key: value}], "config": {...}, "tags": [...], "group": str}`` of one offline run dir."""
    (path,) = run_dir.glob("*.wandb")
    out: dict[str, Any] = {"history": [], "config": {}, "tags": [], "group": None}
    for payload in _payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            out["history"].append(row)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "run":
            for item in record.run.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            out["tags"] = list(record.run.tags)
            out["group"] = record.run.run_group
    return out
