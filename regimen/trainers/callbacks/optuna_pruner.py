"""The ``optuna_pruner`` callback: reports a trial's validation metric to its Optuna study and stops it when pruned."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regimen.registry.params import write_json_atomically
from regimen.trainers.callbacks.callback import TrainerCallback

if TYPE_CHECKING:
    from regimen.trainers.trainer import Trainer

logger = logging.getLogger(__name__)

# How `regimen tune` tells a trial's run which trial it is (the run is a `regimen train` subprocess).
STORAGE_VARIABLE = "REGIMEN_OPTUNA_STORAGE"
STUDY_VARIABLE = "REGIMEN_OPTUNA_STUDY"
TRIAL_ID_VARIABLE = "REGIMEN_OPTUNA_TRIAL_ID"
MONITOR_VARIABLE = "REGIMEN_OPTUNA_MONITOR"
PRUNER_VARIABLE = "REGIMEN_OPTUNA_PRUNER"  # the study's pruner as JSON {"type": ..., "attributes": ...}
PRUNED_NAME = "pruned.json"  # written into a pruned trial's serialization directory


@TrainerCallback.register("optuna_pruner")
class OptunaPrunerCallback(TrainerCallback):
    """Prunes unpromising trials of ``regimen tune``: after every epoch that validated, reports the trial's metric to
    its Optuna study (the epoch is the step) and, when the study's pruner rejects the trial, ends training after that
    epoch (``trainer.should_stop``) and writes ``pruned.json`` (epoch, metric, value) into the run's directory;
    ``regimen tune`` then records the trial as pruned. allennlp-optuna's callback of the same name.

    Outside a ``regimen tune`` trial (``regimen train``, ``regimen retrain``) it does nothing but say so once, so
    the tuned experiment file trains as it is.

    Registered as a `TrainerCallback` with name "optuna_pruner".

    Config keys:
    - `monitor` (str, null: the study's ``--metrics``): the key of the epoch's metrics to report, e.g.
      ``validation_accuracy``. An epoch without that key reports nothing.
    """

    def __init__(self, serialization_dir: str | None = None, monitor: str | None = None) -> None:
        super().__init__(serialization_dir)
        self.monitor = monitor
        self._trial: Any = None

    def on_start(self, trainer: Trainer, is_primary: bool = True, **kwargs: Any) -> None:
        if not is_primary:
            return
        if os.environ.get(TRIAL_ID_VARIABLE) is None:
            logger.info("optuna_pruner: not a trial of `regimen tune`, so nothing is pruned")
            return
        import optuna

        spec = json.loads(os.environ.get(PRUNER_VARIABLE) or "null")  # the study's pruner, rebuilt in this process
        pruner = getattr(optuna.pruners, spec["type"])(**spec["attributes"]) if spec else None
        study = optuna.load_study(
            study_name=os.environ[STUDY_VARIABLE], storage=os.environ[STORAGE_VARIABLE], pruner=pruner
        )
        self._trial = optuna.trial.Trial(study, int(os.environ[TRIAL_ID_VARIABLE]))
        self.monitor = self.monitor or os.environ.get(MONITOR_VARIABLE, "best_validation_loss")

    def on_epoch(
        self, trainer: Trainer, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if self._trial is None or not is_primary:
            return
        validated = any(key.startswith("validation_") for key in metrics)
        value = metrics.get(self.monitor)
        if value is None or ("validation_" in self.monitor and not validated):  # best_validation_* repeats itself
            return
        value = float(value)
        self._trial.report(value, step=epoch)
        if not self._trial.should_prune():
            return
        logger.info("optuna_pruner: the pruner stops this trial after epoch %d (%s = %s)", epoch, self.monitor, value)
        trainer.should_stop = True
        if self.serialization_dir is not None:
            marker = {"epoch": epoch, "monitor": self.monitor, "value": value}
            write_json_atomically(Path(self.serialization_dir) / PRUNED_NAME, marker)
