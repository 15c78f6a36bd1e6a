"""One loader for every model config: the tiny offline model, a local dir, or a hub id."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from lego_arta import distributed
from lego_arta.errors import ConfigError, MissingInputError
from lego_arta.models.families import family

log = logging.getLogger(__name__)


class ModelPathError(MissingInputError):
    """``model.path`` names a local dir that does not exist or holds no model."""


def looks_local(path: str) -> bool:
    """Whether ``path`` names a local dir rather than a hub id (``<user>/<name>``)."""
    return path.startswith(("/", ".", "~")) or Path(path).exists() or path.count("/") != 1


def resolve_model_path(model_cfg: DictConfig, cache_dir: str | Path) -> str:
    """Return the dir or hub id to load: builds the tiny model when ``model.path`` is null.

    A local path is checked before anything is loaded: a missing dir or one without ``config.json`` raises
    :class:`ModelPathError` naming the path and the config key; so is a hub id that neither the local cache nor the
    hub can give (:func:`check_hub_model`).
    """
    if model_cfg.path is None:
        if model_cfg.tiny is None:
            raise ModelPathError(f"model={model_cfg.name}: set model.path (a local dir or a hub id)")
        tiny: dict[str, Any] = OmegaConf.to_container(model_cfg.tiny, resolve=True)  # type: ignore[assignment]
        return str(family(model_cfg).build_tiny(tiny, cache_dir))
    path = str(model_cfg.path)
    if looks_local(path):
        local = Path(path).expanduser()
        if not local.is_dir():
            raise ModelPathError(f"model.path={path}: no such directory")
        if not (local / "config.json").exists():
            raise ModelPathError(f"model.path={path}: no config.json in this directory (not a saved model)")
        return str(local)
    check_hub_model(path)
    return path  # a hub id: transformers resolves it (from the local HF cache when offline)


def resolve_adapter(value: str) -> str:
    """``method.adapter`` as a local dir: a local dir as it is (it must hold ``adapter_config.json``), a hub id
    (``<user>/<name>``, e.g. an adapter that ``experiments/publish.py`` uploaded) downloaded into the Hugging Face
    cache once (``HF_HUB_OFFLINE=1`` reads the cache only) and its snapshot dir returned: vLLM's LoRA request and
    the predictions' generator id read the adapter's files.

    Raises:
        ModelPathError: no adapter there (one line: the path or id, and how to get it).
    """
    if looks_local(value):
        if not (Path(value).expanduser() / "adapter_config.json").is_file():
            raise ModelPathError(f"method.adapter={value}: no adapter_config.json in this directory")
        return str(Path(value).expanduser())
    check_hub_model(value, key="method.adapter", file="adapter_config.json")
    from huggingface_hub import snapshot_download

    return snapshot_download(value)


def check_hub_model(repo_id: str, key: str = "model.path", file: str = "config.json") -> None:
    """Fail in seconds when a hub id can be loaded neither from the local Hugging Face cache nor from the hub.

    On a compute node without network (``HF_HUB_OFFLINE=1``, or the hub unreachable) a model that is not in the
    cache would otherwise fail at ``from_pretrained``, after the data, in a long traceback. A cached ``config.json``
    is enough here (transformers reads the rest from the same snapshot); ``file`` is the one checked.

    Raises:
        ModelPathError: one line naming the id, the cache dir and the two ways out.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(repo_id, file), str):
        return
    if not constants.HF_HUB_OFFLINE:
        try:
            get_hf_file_metadata(hf_hub_url(repo_id, file), timeout=10)
            return
        except (RepositoryNotFoundError, EntryNotFoundError) as err:
            raise ModelPathError(
                f"{key}={repo_id}: not on the Hugging Face hub, or no access ({type(err).__name__})"
            ) from err
        except Exception as err:  # no network: a connection or transport error (httpx, OSError)
            log.debug("the hub cannot be reached: %s", err)
    offline = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
    raise ModelPathError(
        f"{key}={repo_id}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {offline}: download it where "
        f"there is network (huggingface-cli download {repo_id}, with the same HF_HOME), or set {key}=<local dir>"
    )


class AttentionError(ConfigError):
    """``model.attn_implementation=flash_attention_2`` on a machine that cannot run it (no flash-attn, no CUDA)."""


def attention_implementation(model_cfg: DictConfig) -> str:
    """The attention kernel ``model.attn_implementation`` asks for, checked before anything loads.

    ``auto``: flash-attention-2 under CUDA with flash-attn installed, else sdpa; under CUDA without flash-attn the
    fallback is logged as a warning (sdpa needs more memory and time on long image prompts). An explicit
    ``flash_attention_2`` that this machine cannot run raises :class:`AttentionError`, not a failure at load time.
    """
    cuda = torch.cuda.is_available()
    flash = importlib.util.find_spec("flash_attn") is not None
    attn = str(model_cfg.attn_implementation)
    if attn == "auto":
        if cuda and not flash:
            log.warning(
                "model.attn_implementation=auto: flash-attn is not installed, falling back to sdpa on CUDA "
                "(make install-gpu installs it)"
            )
        return "flash_attention_2" if cuda and flash else "sdpa"
    if attn == "flash_attention_2" and not flash:
        raise AttentionError(
            "model.attn_implementation=flash_attention_2 but flash-attn is not installed: make install-gpu "
            "(or model.attn_implementation=sdpa)"
        )
    if attn == "flash_attention_2" and not cuda:
        raise AttentionError("model.attn_implementation=flash_attention_2 needs a CUDA GPU (or =sdpa)")
    return attn


def _choose_dtype(model_cfg: DictConfig) -> torch.dtype:
    dtype_name = model_cfg.dtype
    if dtype_name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, str(dtype_name))


def load_processor(path: str, model_cfg: DictConfig) -> ProcessorMixin:
    """Load the processor: left padding, and the image processor of the model family's ``load_image_processor``
    (the model config's image budget whatever the checkpoint's own files say, PIL backend, checked).

    The image processor is loaded on its own and put in place: processor-level keyword arguments reach every part
    (``backend="pil"`` would also become the tokenizer's ``backend``).

    Raises:
        ImageBudgetError: the loaded processor would not resize images to the configured budget.
    """
    vlm = family(model_cfg)
    processor = AutoProcessor.from_pretrained(path, padding_side="left")
    processor.image_processor = vlm.load_image_processor(path)
    processor.tokenizer.padding_side = "left"
    vlm.check_image_processor(processor)
    return processor


def load_model(
    model_cfg: DictConfig, cache_dir: str | Path, device: str | None = None, **kwargs: Any
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load the model and processor named by the ``model`` config group.

    bf16 + flash-attention-2 when CUDA (and flash-attn) are there, fp32 + sdpa otherwise, unless ``model.dtype`` /
    ``model.attn_implementation`` say otherwise; the family's vision side is frozen when ``model.freeze_vision``.

    Args:
        model_cfg: the ``model`` config group.
        cache_dir: ``paths.cache_dir`` (where the tiny model is built).
        device: where to put the model; default this rank's GPU (``cuda:<LOCAL_RANK>``) when CUDA is there, else CPU.
        **kwargs: passed to ``from_pretrained``.
    """
    path = resolve_model_path(model_cfg, cache_dir)
    dtype, attn = _choose_dtype(model_cfg), attention_implementation(model_cfg)
    log.info("loading %s (%s, %s)", path, dtype, attn)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation=attn, **kwargs)
    model.to(device or distributed.device())  # type: ignore[arg-type]
    if model_cfg.freeze_vision:
        family(model_cfg).freeze_vision(model)
    return model, load_processor(path, model_cfg)
