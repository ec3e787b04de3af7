"""AllenNLP 2.10's `ddp_accelerator` configs: the default "torch" with `find_unused_parameters`, and FairScale's
"fairscale_fsdp" with its keys, read as regimen's FSDP2 accelerator.

Each test names in its docstring the reference source file whose behaviour it pins."""

from __future__ import annotations

import logging

import torch

from regimen.registry import Params
from regimen.trainers.sharding import DdpAccelerator, FsdpAccelerator, TorchDdpAccelerator


def test_the_default_accelerator_is_torch_ddp_taking_find_unused_parameters():
    """allennlp/nn/parallel/ddp_accelerator.py: default_implementation "torch", whose only key is
    find_unused_parameters."""
    accelerator = DdpAccelerator.from_params(Params({"find_unused_parameters": True}))
    assert isinstance(accelerator, TorchDdpAccelerator) and accelerator.find_unused_parameters


def test_fairscale_fsdp_with_its_keys_is_read_as_fsdp_with_one_note(caplog):
    """allennlp/nn/parallel/fairscale_fsdp_accelerator.py: "fairscale_fsdp" takes mixed_precision,
    reshard_after_forward and flatten_parameters; mixed_precision true computes in half precision."""
    keys = {"type": "fairscale_fsdp", "mixed_precision": True, "reshard_after_forward": False}
    with caplog.at_level(logging.WARNING):
        accelerator = DdpAccelerator.from_params(Params({**keys, "flatten_parameters": True}))
    assert isinstance(accelerator, FsdpAccelerator) and accelerator.reshard_after_forward is False
    assert [r.getMessage() for r in caplog.records].count(accelerator.note) == 1
    assert 'is read as "fsdp"' in accelerator.note
    assert accelerator._mixed_precision(torch.device("cpu")) == {
        "param_dtype": torch.bfloat16, "reduce_dtype": torch.float32,
    }  # fmt: skip
    assert accelerator._mixed_precision(torch.device("cuda", 0))["param_dtype"] == torch.float16
