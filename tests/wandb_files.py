"""Read back an offline W&B run's ``.wandb`` file (what ``wandb sync`` would upload), for tests.

wandb 0.31 no longer ships a Python reader. The file is a 7-byte header (``:W&B``, magic, version) followed by
LevelDB-log records in 32 KiB blocks (4-byte CRC, 2-byte length, 1-byte type: full / first / middle / last), each
carrying one protobuf ``Record``.
"""

from __future__ import annotations

import json
import struct
import time
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


def _records(path: Path, timeout: float) -> list[Any]:
    """The records of a finished run's file, the last one its ``exit``.

    ``run.finish()`` returns once the service has the exit record, but the service writes the file's last block when
    it closes the run's stream, after ``finish`` has returned (``inform_finish`` is not waited on). A run read in the
    process that finished it may still be short of its tail, so this waits for the ``exit`` record.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = []
        for payload in _payloads(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: no exit record after {timeout:.0f} s (was the run finished?)")
        time.sleep(0.1)


def read_offline_run(run_dir: Path, timeout: float = 60.0) -> dict[str, Any]:
    """``{"history": [{key: value}], "config": {...}, "tags": [...], "group": str}`` of a finished offline run dir."""
    (path,) = run_dir.glob("*.wandb")
    out: dict[str, Any] = {"history": [], "config": {}, "tags": [], "group": None}
    for record in _records(path, timeout):
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
