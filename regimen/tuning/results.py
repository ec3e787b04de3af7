"""Reading a study back: finding it in its storage, its best values, and one row per trial for print-results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from regimen.registry import ConfigurationError
from regimen.registry.errors import unknown_name_message
from regimen.tuning.study import STUDY_FILE, default_storage, open_storage


def resolve_storage(storage: str) -> str:
    """A storage URL as given, or a study directory (the one ``regimen tune -s`` wrote) standing for its storage."""
    if "://" in storage:
        return storage
    directory = Path(storage)
    if (directory / STUDY_FILE).is_file():
        return json.loads((directory / STUDY_FILE).read_text())["storage"]
    raise ConfigurationError(
        f"{storage!r} is neither a storage URL (sqlite:///study.db, postgresql://...) nor a study directory "
        f"(one holding {STUDY_FILE})",
        "--storage",
    )


def load_study(storage: str, study_name: str | None) -> Any:
    """The study named ``study_name`` in ``storage`` (the only one there when no name is given)."""
    import optuna

    url = resolve_storage(storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ConfigurationError(f"no study database at {url}", "--storage")  # SQLAlchemy would create an empty one
    storage_object = open_storage(url)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage_object)]
    if study_name is None:
        if len(names) != 1:
            raise ConfigurationError(
                f"{url} holds {len(names)} studies ({', '.join(names) or 'none'}): name one", "--study-name"
            )
        study_name = names[0]
    if study_name not in names:
        raise ConfigurationError(unknown_name_message("study name", study_name, names), "--study-name")
    return optuna.load_study(study_name=study_name, storage=storage_object)


def best_values(study: Any) -> dict[str, Any]:
    """The hyper-parameter values of the study's best finished trial."""
    try:
        return dict(study.best_params)
    except ValueError:
        raise ConfigurationError(f"study {study.study_name!r} has no finished trial yet", "--study-name") from None


def study_rows(directory: str) -> tuple[list[dict[str, Any]], list[str], str]:
    """One row per trial of the study that ``regimen tune`` ran in ``directory`` (number, state, each value, the
    objective, ``*`` on the best): the complete trials best first, then the others by number; with the value
    columns and the objective's name."""
    described = json.loads((Path(directory) / STUDY_FILE).read_text())
    study = load_study(described.get("storage") or default_storage(Path(directory)), described["study_name"])
    metric = described["metric"]
    try:
        best = study.best_trial.number
    except ValueError:
        best = None
    trials = study.get_trials(deepcopy=False)
    names = list(dict.fromkeys(name for trial in trials for name in trial.params))
    rows = []
    for trial in trials:
        value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
        if value is None and trial.intermediate_values:  # a pruned trial: its last report
            value = trial.intermediate_values[max(trial.intermediate_values)]
        row = {"trial": trial.number, "state": trial.state.name.lower(), **trial.params, metric: value}
        row["best"] = "*" if trial.number == best else ""
        rows.append(row)
    descending = study.direction.name == "MAXIMIZE"
    finished = [row for row in rows if row["state"] == "complete"]
    others = [row for row in rows if row["state"] != "complete"]
    finished.sort(key=lambda row: row[metric], reverse=descending)
    return finished + others, names, metric  # pruned, failed and running trials after the finished ones, in order
