"""Cluster launchers: ranks from SLURM when torchrun set none, the signals that stop a run with a
checkpoint, and the exit code that tells a batch script to requeue.

torchrun exports ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; ``srun`` without torchrun exports
``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` instead (and ``SLURM_STEP_NUM_TASKS`` for the
tasks of this job step, which may be fewer than the allocation's). torchrun's win when both are
present, so ``srun torchrun ...`` ranks by torchrun.

SLURM sends SIGUSR1 ahead of the time limit or a pre-emption when asked (sbatch's ``signal=USR1@120``
option); it is handled as SIGTERM is: finish the optimiser step, save ``last.pt`` on
every rank's behalf, and exit. The exit code after SIGUSR1 is ``REQUEUE_EXIT_CODE`` (75,
``EX_TEMPFAIL``: try again later), which an sbatch script turns into ``scontrol requeue``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

from maskkit.train.config import TrainConfig
from maskkit.train.integrity import candidates_newest_first
from maskkit.train.rundir import holds_run

#: signals that stop training after the current optimiser step with a checkpoint
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
#: exit code after SIGUSR1 (sysexits EX_TEMPFAIL): the run stopped on a warning and wants requeueing
REQUEUE_EXIT_CODE = 75
#: exit code after SIGINT/SIGTERM (the shell's 128 + SIGINT)
INTERRUPT_EXIT_CODE = 130


def interrupt_exit_code(signum: int | None) -> int:
    """The process exit code after a stop by ``signum`` (None: another rank received it)."""
    return REQUEUE_EXIT_CODE if signum == signal.SIGUSR1 else INTERRUPT_EXIT_CODE


def launcher_ranks(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world size, local rank): torchrun's variables, else SLURM's, else one plain process."""
    env = os.environ if env is None else env
    if "RANK" in env or "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_NTASKS" in env):
        world = int(env.get("SLURM_STEP_NUM_TASKS") or env["SLURM_NTASKS"])
        return int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def is_main_process(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is rank 0 (the one that prints and writes)."""
    return launcher_ranks(env)[0] == 0


def resumes(resume: bool | str | None, out: str | Path) -> bool:
    """Whether a run continues from ``out``: ``True`` always, ``"auto"`` when ``out`` holds a
    checkpoint (one command then serves the first start and every requeue), else never."""
    if resume == "auto":
        return bool(candidates_newest_first(Path(out)))
    return bool(resume)


def settle_auto_resume(config: TrainConfig) -> None:
    """Turn ``resume="auto"`` into a plain decision before any rank writes: continue where a
    checkpoint is; where none is, start, moving aside what an attempt stopped before its first
    checkpoint left behind (``overwrite``'s ``OUT.old-TIMESTAMP``, nothing is deleted)."""
    if config.resume != "auto":
        return
    config.resume = resumes("auto", config.out)
    if not config.resume and holds_run(config.out):
        config.overwrite = True
