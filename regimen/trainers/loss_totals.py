"""LossTotals: the running sums of the losses over an epoch or a validation."""

from __future__ import annotations

from typing import Any

import torch

from regimen.models import Model


class LossTotals:
    """Sums of the losses over an epoch or a validation, kept as tensors so no step waits on the device."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.batches = 0

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.batches = dict(state["sums"]), state["batches"]

    def add(self, output: dict[str, Any]) -> None:
        self.batches += 1
        if "loss" not in output:
            return
        values = {"loss": output["loss"]}
        if "reg_loss" in output:
            values["reg_loss"] = output["reg_loss"]
        for name, value in output.get("named_losses", {}).items():
            values[f"loss_{name}"] = value
        for name, value in values.items():
            detached = value.detach().float()
            self.sums[name] = self.sums[name] + detached if name in self.sums else detached

    def metrics(self, prefix: str, model: Model, reset: bool) -> dict[str, float]:
        values = {f"{prefix}{name}": float(total) / max(self.batches, 1) for name, total in self.sums.items()}
        values.update({f"{prefix}{name}": value for name, value in model.get_metrics(reset=reset).items()})
        return values
