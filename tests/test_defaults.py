"""One source per default: the YAML under conf/ holds every config value; code reads config keys and never falls back.

A fallback in code is a second source that drifts from the YAML (``demos.enabled`` was true in the YAML and false as
the code's fallback). This test scans lego_arta/ and experiments/ for the forms a fallback takes:
``x.get("key", ...)`` (``x.get("key")`` falls back to None), ``x.setdefault("key", ...)`` and
``getattr(x, "key", default)``. Every such call must be on a receiver of ``ALLOWED``: data that is not a config node
(JSON read from files, model output, library objects, the environment), each with its reason. An entry that no longer
matches fails too, so the list stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# (file, receiver as written) -> why the call is not a config fallback
ALLOWED: dict[tuple[str, str], str] = {
    ("lego_arta/cli.py", "os.environ"): "the environment (HYDRA_FULL_ERROR), not a config key",
    ("lego_arta/distributed.py", "env"): "the launcher's environment (torchrun, Slurm): absence has a meaning",
    ("lego_arta/distributed.py", "os.environ"): "the launcher's environment (torchrun's agent store flag)",
    ("lego_arta/data/manuals.py", "ins"): "a manual row of the dataset's JSON: its fields may be absent",
    ("lego_arta/data/manuals.py", "vlm"): "the VLM block of a manual row (dataset JSON): its fields may be absent",
    ("lego_arta/data/manuals.py", "data"): "a manual file's JSON object (dataset): instructions / manual_id may lack",
    ("lego_arta/data/records.py", "data"): "a record read from a JSONL file: its id names the record in an error",
    ("lego_arta/publish.py", "cfg"): "a run's saved config.yaml read back as plain YAML (an older run may lack keys)",
    ("lego_arta/publish.py", "logger"): "the logger node of a saved config.yaml (plain YAML)",
    ("lego_arta/publish.py", "prov"): "a run's provenance.json (a file)",
    ("lego_arta/publish.py", "prov or {}"): "a run's provenance.json (a file), or none",
    ("lego_arta/ownership.py", "owner"): "an owner.json record (a file another process wrote): fields may lack",
    ("lego_arta/ownership.py", "os.environ"): "the launcher's environment (SLURM_JOB_ID): absence has a meaning",
    ("lego_arta/data/lmms_rec.py", "image"): "a parquet row's HF Image struct (dataset): bytes may be absent",
    ("lego_arta/data/vlm_r1_rec.py", "t"): "a conversation turn of a VLM-R1 jsonl line (dataset)",
    ("lego_arta/data/vlm_r1_rec.py", "turns"): "a VLM-R1 line's turns by speaker (dataset): one may be absent",
    ("lego_arta/data/vlm_r1_rec.py", "item"): "a VLM-R1 record (dataset JSON): problem, solution, id may lack",
    ("experiments/prepare_data.py", "summary"): "a split_summary dict: summaries before layouts have no layout key",
    ("lego_arta/data/task_files.py", "item"): "a task file's JSON item (dataset): id, task, manual_id are optional",
    ("lego_arta/data/task_files.py", "values"): "a task-file record's fields: the files may omit context, step_num",
    ("lego_arta/evaluation/generate.py", "row"): "a row of an existing predictions.jsonl (resumed evaluation)",
    ("lego_arta/evaluation/predictions_table.py", "record"): (
        "a predictions.jsonl row: files written before image_size lack it"
    ),
    ("lego_arta/methods/callbacks.py", "self.trainer"): "TRL's trainer internals (_logs), not our config",
    ("lego_arta/methods/callbacks.py", "buffer"): "TRL's completion logs, not our config",
    ("lego_arta/methods/callbacks.py", "row"): "a row of history.jsonl",
    ("lego_arta/sample_metrics.py", "record"): "a scored record: task is an optional field",
    ("lego_arta/models/compat.py", "tokenizer"): "a tokenizer object (transformers), not our config",
    ("lego_arta/models/qwen2_5_vl.py", "image_processor"): "a processor object (transformers), not our config",
    ("lego_arta/models/internvl.py", "processor"): "a processor object (transformers), not our config",
    ("lego_arta/models/qwen2_5_vl.py", "processor"): "a processor object (transformers), not our config",
    ("lego_arta/methods/grpo.py", "processor"): "a processor object: InternVL's has <img> / </img> ids, Qwen's not",
    ("lego_arta/planning/memory.py", "text"): "a checkpoint's config.json (transformers), not our config",
    ("lego_arta/parsing.py", "item"): "a JSON box parsed from model output",
    ("lego_arta/parsing.py", "completion[-1]"): "a chat message of TRL's conversational completions",
    ("lego_arta/parsing.py", "p"): "a content part of a chat message",
    ("lego_arta/report/ablation.py", "run"): "a run's metrics (a failed run has none)",
    ("lego_arta/provenance.py", "prov"): "a run's provenance.json: runs made before a field existed lack it",
    ("lego_arta/provenance.py", "gpu"): "provenance.json's GPU record",
    ("lego_arta/report/collect.py", "prov"): "a run's provenance.json: runs made before a field existed lack it",
    ("lego_arta/report/curves.py", "row"): "a row of history.jsonl",
    ("lego_arta/rewards/base.py", "kwargs"): "TRL's reward keyword arguments (log_metric comes from GRPOTrainer only)",
    ("lego_arta/tracking.py", "os.environ"): "the environment (W&B's own variables)",
}

SCANNED = ("lego_arta", "experiments")


def fallbacks(root: Path = ROOT, folders: tuple[str, ...] = SCANNED) -> list[tuple[str, int, str, str]]:
    """``(file, line, receiver, key)`` of every ``.get`` / ``.setdefault`` with a string key and 3-argument
    ``getattr`` in ``folders`` under ``root``, by file and line."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
                if not isinstance(node, ast.Call):
                    continue
                func, args = node.func, node.args
                keyed = bool(args) and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
                if isinstance(func, ast.Attribute) and func.attr in ("get", "setdefault") and keyed:
                    found.append((rel, node.lineno, ast.unparse(func.value), str(args[0].value)))
                elif isinstance(func, ast.Name) and func.id == "getattr" and len(args) == 3:
                    found.append((rel, node.lineno, ast.unparse(args[0]), ast.unparse(args[1])))
    return sorted(found)


def test_no_code_side_fallback_of_a_config_key():
    found = fallbacks()
    known = ALLOWED
    unexpected = [
        f"{file}:{line}: {receiver}: {key!r}" for file, line, receiver, key in found if (file, receiver) not in known
    ]
    assert not unexpected, (
        "a config value read with a fallback is a second source of its default: read the key directly "
        "(cfg.key / cfg['key']) and keep the value in conf/; if the receiver is not a config node, add it to "
        "ALLOWED with the reason:\n" + "\n".join(unexpected)
    )
    # every entry still matches something: the lists say what the code does
    used = {(file, receiver) for file, _, receiver, _ in found}
    assert set(known) <= used, f"stale entries: {sorted(set(known) - used)}"


def test_the_scan_finds_each_form_of_fallback(tmp_path: Path):
    # the scanner itself: each form is caught, a direct read is not
    package = tmp_path / "lego_arta"
    package.mkdir()
    (package / "m.py").write_text(
        "def f(cfg):\n"
        "    a = cfg.get('out')\n"
        "    b = cfg.eval.get('limit', 0)\n"
        "    cfg.args.setdefault('bf16', False)\n"
        "    c = getattr(cfg, 'seed', 0)\n"
        "    return cfg.out, cfg['limit'], getattr(cfg, 'seed')\n"
    )
    assert [(line, receiver, key) for _, line, receiver, key in fallbacks(tmp_path, ("lego_arta",))] == [
        (2, "cfg", "out"),
        (3, "cfg.eval", "limit"),
        (4, "cfg.args", "bf16"),
        (5, "cfg", "'seed'"),
    ]
