"""The dataset from the Hugging Face hub: ``data.hub=PPPPPeter/arta`` (``data.revision`` pins a commit).

``huggingface_hub.snapshot_download`` puts the dataset repository into the Hugging Face cache (``HF_HOME``) once,
then the reader reads that snapshot as it reads ``data.root``. The commit read is returned, so two clusters can tell
whether they trained on the same data: the run records it (``data.revision`` in ``config.yaml`` and the W&B config,
``hub.revision`` in ``split_summary.json``). With ``HF_HUB_OFFLINE=1`` (a compute node without network) the cache is
read; when neither the network nor the cache has the data, the error is one line saying how to get it.
"""

from __future__ import annotations

from pathlib import Path

from lego_arta.data.records import DataError


def hub_snapshot(repo_id: str, revision: str | None) -> tuple[Path, str]:
    """``(local snapshot dir, commit)`` of the dataset repository ``repo_id`` at ``revision`` (None: its main branch).

    Raises:
        DataError: the dataset is neither in the cache nor downloadable (no network, unknown id or revision).
    """
    from huggingface_hub import constants, snapshot_download

    try:
        path = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision))
    except Exception as err:  # offline and not cached, unreachable, unknown repo or revision: one line, not a trace
        at = f"@{revision}" if revision else ""
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{type(err).__name__}: {err}".splitlines()[0]
        raise DataError(
            f"data.hub={repo_id}{at}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}: download it "
            f"where there is network (huggingface-cli download {repo_id} --repo-type dataset, with the same HF_HOME), "
            "or set data.root=<local dir>"
        ) from err
    return path, path.name  # a snapshot dir is named by its commit
