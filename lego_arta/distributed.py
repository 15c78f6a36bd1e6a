"""Several processes on one run (torchrun, ``accelerate launch``, the tasks of a Slurm job): who this process is,
the run dir they share, and what only the main process does. The one place that reads a launcher's environment.

- :func:`ranks`: this process's rank, local rank and the world size. torchrun and ``accelerate launch`` (torchrun
  underneath) set ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE``; a task that Slurm's ``srun`` starts (what
  ``hydra/launcher=slurm`` runs) has ``SLURM_PROCID`` / ``SLURM_LOCALID`` / ``SLURM_NTASKS`` instead, mapped by
  :func:`slurm_env`.
- :func:`setup`: exports that mapping (with ``MASTER_ADDR`` / ``MASTER_PORT``) for torch.distributed's ``env://``
  and starts the process group through accelerate's ``PartialState`` (NCCL on GPUs, gloo on CPU), the state the HF
  Trainer then reuses; each rank's model goes to :func:`device` (``cuda:<LOCAL_RANK>``).
- :func:`shared_now`: the ``${lego_arta.now:FORMAT}`` resolver of the run and sweep dirs. Each process composes its
  own config, so Hydra's ``${now:}`` gives each rank its own time (two run dirs a second apart). Under torchrun the
  first rank to ask puts its time into the launcher's own key-value store (``TORCHELASTIC_USE_AGENT_STORE``) and
  every rank reads it back. Under ``hydra/launcher=slurm`` the run dir is resolved once, in the submitting process,
  and every task of the job gets that value with the pickled config (Hydra copies the resolver cache into each job's
  config), so the resolver is not asked again there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from lego_arta.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: `import lego_arta` (score, report) stays light
    import torch

# how long a rank waits for the first rank's time in the launcher's store
STORE_TIMEOUT = timedelta(seconds=120)
# MASTER_PORT of a Slurm job without one: a port from this range, picked by the job id (the same in every task)
SLURM_PORTS = (20000, 40000)


class Ranks(NamedTuple):
    """This process's place among the processes of one run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that writes the run dir's files and logs to W&B."""
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """The first host name of a Slurm node list (``SLURM_JOB_NODELIST``): rank 0 runs there.

    >>> first_host("gpu-[003-004,007],cpu01")
    'gpu-003'
    >>> first_host("node7")
    'node7'
    """
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: not a Slurm node list")
    prefix, ranges = match.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def slurm_env(env: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's ``env://`` variables for a task of a Slurm job step with several tasks; ``{}`` otherwise.

    ``SLURM_PROCID`` -> ``RANK``, ``SLURM_LOCALID`` -> ``LOCAL_RANK``, ``SLURM_NTASKS`` -> ``WORLD_SIZE`` (tasks per
    node -> ``LOCAL_WORLD_SIZE``); ``MASTER_ADDR`` is the job's first node and ``MASTER_PORT`` comes from the job id,
    unless the job sets them. Assumes the tasks were started by ``srun`` (submitit does): a batch script that runs
    python itself is one process, whatever ``--ntasks`` says.

    >>> env = {"SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_NTASKS": "16", "SLURM_JOB_NUM_NODES": "2",
    ...        "SLURM_JOB_NODELIST": "gpu[12-13]", "SLURM_JOB_ID": "4242"}
    >>> slurm_env(env)["RANK"], slurm_env(env)["LOCAL_RANK"], slurm_env(env)["MASTER_ADDR"]
    ('9', '1', 'gpu12')
    """
    if "SLURM_PROCID" not in env or int(env.get("SLURM_NTASKS", "1")) <= 1:
        return {}
    ntasks = int(env["SLURM_NTASKS"])
    nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    low, high = SLURM_PORTS
    return {
        "RANK": env["SLURM_PROCID"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "WORLD_SIZE": str(ntasks),
        "LOCAL_WORLD_SIZE": str(ntasks // nodes),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"]),
        "MASTER_PORT": env.get("MASTER_PORT") or str(low + int(env["SLURM_JOB_ID"]) % (high - low)),
    }


def ranks(env: Mapping[str, str] | None = None) -> Ranks:
    """This process's rank, local rank and world size: torchrun's variables, else a Slurm task's, else one process."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env:  # torchrun / accelerate launch, or a Slurm task after setup()
        return Ranks(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]))
    slurm = slurm_env(env)
    if slurm:
        return Ranks(int(slurm["RANK"]), int(slurm["LOCAL_RANK"]), int(slurm["WORLD_SIZE"]))
    return Ranks()


def setup() -> Ranks:
    """Join this process to its run's process group (nothing to do for a single process); return its ranks.

    A Slurm task's variables are exported first (:func:`slurm_env`); torchrun's are kept as they are.
    """
    if "WORLD_SIZE" not in os.environ:
        os.environ.update(slurm_env(os.environ))
    here = ranks()
    if here.world_size > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())  # the HF Trainer finds the group and reuses it
    return here


def device() -> torch.device:
    """Where this rank's model goes: ``cuda:<LOCAL_RANK>`` under CUDA (``cuda:0`` for one process), else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = ranks().local_rank
    if local >= torch.cuda.device_count():
        raise ConfigError(
            f"LOCAL_RANK={local} but this process sees {torch.cuda.device_count()} GPU(s): start one process per GPU "
            "(torchrun --nproc_per_node, or hydra.launcher.tasks_per_node = hydra.launcher.gpus_per_node)"
        )
    return torch.device("cuda", local)


def is_main() -> bool:
    """True on the process that writes the run dir's files (the only one when nothing launched several)."""
    return ranks().is_main


def barrier() -> None:
    """Wait until every process of the run gets here (nothing to wait for in a single process)."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def any_process(flag: bool) -> bool:
    """True when ``flag`` is true on any process of the run (an all-reduce of one number; ``flag`` itself in a single
    process). Every process must call it at the same point, as with a barrier."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([float(flag)], device=device() if torch.distributed.get_backend() == "nccl" else "cpu")
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


@contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (it builds the tiny model and the scenes into the shared cache), the
    others after it (they find the cache built)."""
    main = is_main()
    if not main:
        barrier()
    yield
    if main:
        barrier()


def shared_now(fmt: str) -> str:
    """``datetime.now().strftime(fmt)``, the same on every process of one launch: the run dir's name.

    Raises:
        ConfigError: several processes, launched by something without torchrun's store (the deepspeed launcher,
            ``srun python ...`` outside ``hydra/launcher=slurm``): they could not agree on one run dir.
    """
    local = datetime.now().strftime(fmt)
    here = ranks()
    if here.world_size == 1:
        return local
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        raise ConfigError(
            f"{here.world_size} processes but no torchrun store to agree on one run dir: launch with torchrun "
            "(or accelerate launch), or give every process the same hydra.run.dir=..."
        )
    from torch.distributed import TCPStore

    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=STORE_TIMEOUT)
    # the first rank to ask sets the value; compare_set returns what the store holds afterwards
    return store.compare_set(f"lego_arta/now/{fmt}", "", local).decode()
