"""Sharded state: a model sharded with FSDP2 saved and loaded through ``torch.distributed.checkpoint`` (DCP), and
its full weights gathered for ``best.th`` and archives.

A sharded checkpoint is a directory written by every worker together: one file of shards per worker and the
primary's ``.metadata``. DCP reads it back on any number of workers (each reads the parts of the shards it now
holds), or in a single process, so a run resumes on another topology. The functions here also take an unsharded
module, whose state dict holds ordinary tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra: dict[str, Any]) -> dict[str, Any]:
    """The state to save with DCP: the model's and the optimizer's state dicts (parameters named by their place in
    the model, so that another sharding maps onto them), and ``extra``'s (named state dicts holding DTensors)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state, **extra}


def save_sharded(state: dict[str, Any], directory: Path) -> None:
    """Write ``state`` into ``directory``: every worker of the process group calls this together, each writing its
    own shards (fsynced); when it returns on the primary, every worker's files are complete."""
    import torch.distributed.checkpoint as dcp

    dcp.save(state, storage_writer=dcp.FileSystemWriter(str(directory), sync_files=True))


def load_sharded(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra: dict[str, Any]
) -> dict[str, Any]:
    """Load the sharded checkpoint in ``directory`` into ``model`` and ``optimizer`` (resharded for this run's
    workers); returns ``extra``'s state dicts (templates of the same layout, such as a moving average's current
    ``state_dict()``) filled with the saved values. Every worker calls this together."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = sharded_state(model, optimizer, extra)
    dcp.load(state, storage_reader=dcp.FileSystemReader(str(directory)))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return {key: state[key] for key in extra}


def is_sharded_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a complete sharded checkpoint (a directory with DCP's metadata)."""
    return (path / ".metadata").is_file()


def full_model_state(model: torch.nn.Module) -> dict[str, Any]:
    """The full weights of a sharded ``model`` on the CPU, on the primary; an empty dict on the other workers.
    Every worker calls this together."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_model_state(model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load the primary's full weights ``state`` into the sharded ``model`` on every worker (the others' ``state``
    is ignored). Every worker calls this together."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    primary = not (dist.is_initialized() and dist.get_rank() != 0)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, state if primary else {}, options=options)
