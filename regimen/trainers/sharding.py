"""The `ddp_accelerator` of a distributed run: plain data parallelism (DDP) or a model sharded with FSDP2.

``distributed: {"cuda_devices": [...], "ddp_accelerator": {"type": "fsdp", ...}}`` shards the model's parameters,
gradients and optimizer state across the workers with torch's ``fully_shard``: each worker holds its share of
every parameter and gathers a layer's whole parameters only while that layer computes. The trainer does not branch
on it: :class:`ShardedDistributed` is the runtime that wraps the model, keeps gradients local in accumulation
steps, gathers the full weights for ``best.th`` and archives, and tells the checkpointer to save shards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Literal

import torch

from regimen.registry import ConfigurationError, Registrable
from regimen.registry.errors import missing_names
from regimen.trainers.distributed import ProcessGroupDistributed
from regimen.trainers.module_classes import check_class_names, class_name
from regimen.trainers.sharded_state import full_model_state, load_full_model_state

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
Dtype = Literal["float32", "float16", "bfloat16"]


class DdpAccelerator(Registrable):
    """How the workers of a distributed run share the model: the `ddp_accelerator` key of the `distributed` block.

    Registered implementations: "torch" (the default: DistributedDataParallel, every worker a full copy) and
    "fsdp" (FSDP2: the model sharded across workers; AllenNLP's "fairscale_fsdp" is read as it).
    """

    default_implementation = "torch"

    def runtime(self, local_rank: int, device: torch.device) -> ProcessGroupDistributed:
        """The distributed runtime of this worker, once its process group is initialised."""
        raise NotImplementedError  # abstract


@DdpAccelerator.register("torch")
class TorchDdpAccelerator(DdpAccelerator):
    """Data parallelism with torch's DistributedDataParallel: each worker holds the whole model and its optimizer
    state, and gradients are averaged across workers in every backward pass.

    Registered as a `DdpAccelerator` with name "torch" (the default).

    Config keys:
    - `find_unused_parameters` (bool, false): for models that leave some parameters out of a step's loss (the
      same as the `distributed` block's own key, where AllenNLP 2.10 kept it).
    """

    def __init__(self, find_unused_parameters: bool = False) -> None:
        self.find_unused_parameters = find_unused_parameters

    def runtime(self, local_rank: int, device: torch.device) -> ProcessGroupDistributed:
        return ProcessGroupDistributed(local_rank, device, self.find_unused_parameters)


@DdpAccelerator.register("fsdp")
class FsdpAccelerator(DdpAccelerator):
    """Fully sharded data parallelism with torch's FSDP2 (``torch.distributed.fsdp.fully_shard``).

    Registered as a `DdpAccelerator` with name "fsdp"; "fairscale_fsdp" (AllenNLP 2.10's FairScale FSDP, whose
    configs use the same keys) is read as it, with a note.

    Every module chosen by `shard_modules` or `min_num_params`, and then the whole model, becomes one shard group:
    its parameters are split across the workers along their first dimension and gathered for its forward and
    backward only. Checkpoints are sharded (each worker writes its shard with ``torch.distributed.checkpoint``, and
    a run resumes on any number of workers); ``best.th`` and ``model.tar.gz`` hold the full weights, as without
    sharding. Gradient clipping, accumulation, AMP, moving averages, ``no_grad`` and the schedules work as without
    it. Build the optimizer from the config as usual: the trainer shards the model before it builds the optimizer.

    Config keys:
    - `shard_modules` (list[str], []): class names of the modules that each become a shard group (the layers of a
      stack, such as "TransformerEncoderLayer" or "Linear"). A name that matches no module of the model is an error.
    - `min_num_params` (int, null): also make a shard group of every module holding at least this many parameters
      that no smaller group took (searched from the leaves up, as FairScale's size-based auto-wrap).
      With neither key the whole model is one group (its parameters are still sharded; gathered all at once).
    - `mixed_precision` (bool or object, false): true computes with bfloat16 parameters (float16 on CUDA, as
      FairScale's `mixed_precision: true`), reduces gradients in float32 and keeps float32 master weights; an
      object names `param_dtype`, `reduce_dtype` and `output_dtype` ("float32" | "float16" | "bfloat16").
    - `reshard_after_forward` (bool, true): free a group's gathered parameters after its forward (gathered again
      for its backward: less memory, more communication); false keeps them until the backward.
    - `cpu_offload` (bool, false): keep the sharded parameters, gradients and optimizer state in CPU memory and
      step the optimizer there (CUDA workers only; CPU workers already hold them there).
    - `flatten_parameters` (bool, true): FairScale's key, accepted for its configs; FSDP2 shards each parameter
      on its own, so it has no effect.
    """

    note = ""  # logged when built: a subclass's deprecation note

    def __init__(
        self,
        shard_modules: list[str] | None = None,
        min_num_params: int | None = None,
        mixed_precision: bool | dict[str, Dtype] = False,
        reshard_after_forward: bool = True,
        cpu_offload: bool = False,
        flatten_parameters: bool = True,
    ) -> None:
        if min_num_params is not None and min_num_params < 1:
            raise ConfigurationError(f"expected a positive number, got {min_num_params}", key="min_num_params")
        if isinstance(mixed_precision, dict):
            unknown = sorted(set(mixed_precision) - {"param_dtype", "reduce_dtype", "output_dtype"})
            if unknown:
                raise ConfigurationError(
                    f"unknown key(s) {missing_names(unknown, ['param_dtype', 'reduce_dtype', 'output_dtype'])}; "
                    "expected param_dtype, reduce_dtype, output_dtype",
                    key="mixed_precision",
                )
        if self.note:
            logger.warning(self.note)
        self.shard_modules = list(shard_modules or [])
        self.min_num_params = min_num_params
        self.mixed_precision = mixed_precision
        self.reshard_after_forward = reshard_after_forward
        self.cpu_offload = cpu_offload

    def runtime(self, local_rank: int, device: torch.device) -> ProcessGroupDistributed:
        return ShardedDistributed(local_rank, device, self)

    def shard(self, model: torch.nn.Module, device: torch.device) -> None:
        """Apply ``fully_shard`` to the chosen modules, children before parents, then to ``model`` itself."""
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        options: dict[str, Any] = {"reshard_after_forward": self.reshard_after_forward}
        policy = self._mixed_precision(device)
        if policy is not None:
            options["mp_policy"] = MixedPrecisionPolicy(**policy)
        if self.cpu_offload and device.type == "cuda":
            options["offload_policy"] = CPUOffloadPolicy()
        elif self.cpu_offload:
            logger.info("fsdp cpu_offload: the workers compute on the CPU, where the shards already are")
        for module in self._groups(model):
            fully_shard(module, **options)
        fully_shard(model, **options)

    def _mixed_precision(self, device: torch.device) -> dict[str, torch.dtype] | None:
        if self.mixed_precision is False:
            return None
        if self.mixed_precision is True:
            low = torch.float16 if device.type == "cuda" else torch.bfloat16
            return {"param_dtype": low, "reduce_dtype": torch.float32}
        return {key: _DTYPES[value] for key, value in self.mixed_precision.items()}

    def _groups(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The modules to shard before the root, in post-order (a module after the modules inside it)."""
        check_class_names(model, self.shard_modules, "distributed.ddp_accelerator.shard_modules")
        names = set(self.shard_modules)
        groups: list[torch.nn.Module] = []

        def visit(module: torch.nn.Module, is_root: bool) -> int:
            """The number of parameters under ``module`` that no group below it took."""
            left = sum(visit(child, False) for child in module.children())
            left += sum(parameter.numel() for parameter in module.parameters(recurse=False))
            chosen = class_name(module) in names
            big = self.min_num_params is not None and left >= self.min_num_params
            if not is_root and left and (chosen or big):
                groups.append(module)
                return 0
            return left

        visit(model, True)
        return groups


@DdpAccelerator.register("fairscale_fsdp")
class FairScaleFsdpAccelerator(FsdpAccelerator):
    """AllenNLP 2.10's FairScale FSDP, read as regimen's FSDP2 accelerator with a note (FairScale is no longer
    maintained; torch's own FSDP2 replaced it).

    Registered as a `DdpAccelerator` with name "fairscale_fsdp".

    Config keys: those of "fsdp" (`mixed_precision`, `reshard_after_forward`, `flatten_parameters` are FairScale's,
    `shard_modules`, `min_num_params`, `cpu_offload` regimen's).
    """

    note = 'ddp_accelerator "fairscale_fsdp" is read as "fsdp" (torch\'s FSDP2; FairScale is unmaintained)'


class ShardedDistributed(ProcessGroupDistributed):
    """A worker of a run whose model is sharded with FSDP2 (see :class:`FsdpAccelerator`).

    The model is sharded in place (``wrap`` returns it, not a wrapper); its ``state_dict()`` holds this worker's
    shards as DTensors, so full weights come from :meth:`full_model_state`, a collective.
    """

    shards_checkpoints = True

    def __init__(self, local_rank: int, device: torch.device | str, accelerator: FsdpAccelerator) -> None:
        super().__init__(local_rank, device)
        self._accelerator = accelerator

    def shard_model(self, model: torch.nn.Module) -> None:
        """Move ``model`` to this worker's device and shard its parameters in place (once)."""
        from torch.distributed.fsdp import FSDPModule

        if not isinstance(model, FSDPModule):
            self._accelerator.shard(model.to(self.device), self.device)

    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool | None = None) -> torch.nn.Module:
        """``model`` itself, already sharded by :meth:`shard_model` (before its optimizer was built on its
        parameters: sharding replaces them)."""
        from torch.distributed.fsdp import FSDPModule

        if not isinstance(model, FSDPModule):
            raise RuntimeError("shard the model with shard_model() before building its optimizer, then wrap it")
        self._own_metrics(model)
        return model

    def no_sync(self, wrapped: torch.nn.Module) -> contextlib.AbstractContextManager[None]:
        return _gradients_kept_local(wrapped)

    def full_model_state(self, model: torch.nn.Module) -> dict[str, Any]:
        """Every worker calls this; the primary gets the full weights, on the CPU, the others an empty dict."""
        return full_model_state(model)

    def load_full_model_state(self, model: torch.nn.Module, state: dict[str, Any]) -> None:
        """Every worker calls this; the primary's ``state`` is loaded everywhere (the others' may be empty)."""
        load_full_model_state(model, state)


@contextlib.contextmanager
def _gradients_kept_local(model: torch.nn.Module) -> Iterator[None]:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]
