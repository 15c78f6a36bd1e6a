"""lego-arta: fine-tune and evaluate Qwen2.5-VL on LEGO-ARTA with SFT and GRPO (TRL + PEFT), Hydra and W&B."""

from lego_arta import config as _config  # noqa: F401  (registers the Hydra resolver and config nodes)

__version__ = "0.1.0"
