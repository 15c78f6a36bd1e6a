"""lego-arta: fine-tune and evaluate Qwen2.5-VL on LEGO-ARTA with SFT and GRPO (TRL + PEFT), Hydra and W&B."""

__version__ = "0.1.0"
