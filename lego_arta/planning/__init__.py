"""``make plan``: will a run fit, and how long will it take, before any GPU time.

Above ``data``, ``methods`` and ``models`` (it builds the run's prompts with the data layer, its TRL config with the
methods layer, and the architecture on the meta device from the model's files); nothing below imports it.

- ``plan``: the run's prompts and tokens, its workload, the memory estimate, the verdict and the wall time.
- ``memory``: the peak-memory formula (in its docstring).
- ``meta``: the architecture without weights: meta-device model, LoRA, parameter counts.
"""
