"""Finding the LEGO-ARTA images on disk: the dataset root, re-rooted ``img_path`` values, URL-encoded names.

Evidence for the rules (public sources; see the reader's docstring for the whole list):

- Everything sits under one ``ARTA_LEGO/`` folder: the construction script walks ``ARTA_LEGO/lego``
  (Jiahuan-Pei/AutonomousDialogAgent4AugmentedReality ``LEGO_vlm/dataset_pre.py``, ``main``) and the study loads
  ``LegoVLMDataset("ARTA_LEGO")`` (BPerju/LEGO-R1 ``Iteration_2/Qwen2.5-VL-DATA_WRANGLING.ipynb``). ``data.root``
  may be the download folder or ``ARTA_LEGO/`` itself.
- ``VLM.img_path`` is ``<prefix><manual>/images/<file>``, the prefix being the authors' own path (``snellius_dir``
  in ``dataset_pre.py``: an absolute cluster path, or a relative ``ARTA_LEGO/lego/``); the study keeps only what
  follows ``lego/`` (``_canon`` in the notebook). Here it is re-rooted onto ``root/lego/<manual>/images/<file>``,
  else onto the longest tail of the path that exists under ``root``.
- ``dataset_pre.py`` writes spaces and ``#`` of the image URLs as ``%20`` and ``%23`` into ``img_path``, and the
  images are saved under the URL's base name: a name is looked up as written, decoded and encoded.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
DOWNLOAD_FOLDER = "ARTA_LEGO"
DATASET_MARKERS = ("json_data", "train_test_example")


def dataset_root(root: Path) -> Path:
    """``root``, or its ``ARTA_LEGO/`` folder when ``root`` is the download folder that holds it."""
    if not any((root / marker).is_dir() for marker in DATASET_MARKERS) and (root / DOWNLOAD_FOLDER).is_dir():
        return root / DOWNLOAD_FOLDER
    return root


def name_key(stem: str) -> str:
    """The form of a file stem that image lookups compare: URL-decoded (``a%20b`` and ``a b`` are one name).

    >>> name_key("60274%20Lighthouse%23_3_step")
    '60274 Lighthouse#_3_step'
    """
    return unquote(stem)


def _spellings(text: str) -> list[str]:
    """``text`` as written, URL-decoded and URL-encoded (spaces and ``#`` only, as the construction script did)."""
    decoded = unquote(text)
    encoded = decoded.replace("#", "%23").replace(" ", "%20")
    return list(dict.fromkeys((text, decoded, encoded)))


class ImageFinder:
    """Resolves image paths from the data to local files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, raw: str, manual: str) -> Path | None:
        """The local file for ``raw`` (an ``img_path`` of ``manual``'s JSON, or a task file's image), or None.

        Tried in order, for each spelling of ``raw`` (as written, URL-decoded, URL-encoded): an absolute path that
        exists; ``root/lego/<manual>/images/<file>`` with the manual folder named in the path (``.../<m>/images/f``),
        then with ``manual``; the longest tail of the path that exists under ``root``.
        """
        text = raw.strip().removeprefix("file://").replace("\\", "/")
        for spelling in _spellings(text):
            posix = PurePosixPath(spelling)
            parts = posix.parts[1:] if posix.is_absolute() else posix.parts
            if not parts:
                continue
            if posix.is_absolute() and Path(spelling).is_file():
                return Path(spelling)
            if len(parts) >= 2 and parts[-2] == "images":
                folders = [parts[-3]] if len(parts) >= 3 else []
                for folder in dict.fromkeys([*folders, manual]):
                    candidate = self.root / "lego" / folder / "images" / parts[-1]
                    if candidate.is_file():
                        return candidate
            for k in range(len(parts)):
                candidate = self.root.joinpath(*parts[k:])
                if candidate.is_file():
                    return candidate
        return None


def index_images(folder: Path) -> dict[tuple[str, str], Path]:
    """(manual, ``name_key`` of the file stem) -> path of every image under ``folder``.

    The manual is the folder after ``lego/`` (``object_dataset/lego/<m>/...``), else the first folder under
    ``folder`` (``lego/<m>/images/...``); images may sit at any depth below it. The first path (sorted) wins.
    """
    index: dict[tuple[str, str], Path] = {}
    if not folder.is_dir():
        return index
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder).parts
        manual = manual_from_parts(rel)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                index.setdefault((manual, name_key(path.stem)), path)
    return index


def manual_from_parts(parts: tuple[str, ...]) -> str:
    """The manual folder in a path's folders: the one after ``lego``, else the first."""
    if "lego" in parts and parts.index("lego") + 1 < len(parts):
        return parts[parts.index("lego") + 1]
    return parts[0] if parts else ""


def manual_of(image: Path, root: Path) -> str:
    """The manual of an image path: the folder after ``lego/`` (``lego/<m>/images/``, ``object_dataset/lego/<m>/``)."""
    try:
        return manual_from_parts(image.relative_to(root).parts[:-1])
    except ValueError:
        return manual_from_parts(image.parts[:-1])


def rel_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when under it (how errors and drops name files), else as is."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
