"""MLflowCallback: logs a training run (config, epoch metrics, learning rates, results) to MLflow tracking."""

from __future__ import annotations

import importlib.util
import json
import logging
import numbers
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from regimen.models.archival import BEST_WEIGHTS_NAME, CONFIG_NAME, archive_model
from regimen.registry import ConfigurationError
from regimen.trainers.callbacks.callback import TrainerCallback
from regimen.trainers.preemption import TrainingPreempted

logger = logging.getLogger(__name__)

SERIALIZATION_DIR_TAG = "regimen.serialization_dir"
# The final metrics' file the command writes after training (run_directory.METRICS_NAME, a layer above).
METRICS_NAME = "metrics.json"
_INSTALL = "pip install 'regimen[mlflow]' (or pip install mlflow)"


@TrainerCallback.register("mlflow")
class MLflowCallback(TrainerCallback):
    """Logs a run's config, epoch metrics, learning rates and results to an MLflow tracking store.

    Registered as a `TrainerCallback` with name "mlflow". Needs the mlflow package: ``pip install
    'regimen[mlflow]'``. Only the primary worker of a distributed run logs. See the runs with ``mlflow ui
    --backend-store-uri <tracking_uri>``.

    When training starts it creates an MLflow run (building the callback contacts nothing) and logs the
    experiment's ``config.json``, flattened, as the run's params (``trainer.optimizer.lr`` = ``0.01``; a list of
    plain values is one JSON param, ``model.hidden_dims`` = ``[8]``; a list holding objects is flattened by index,
    ``trainer.callbacks.0.type``, as error messages name keys), and the file itself as the artifact
    ``config.json``. A value longer than MLflow's limit (6000 characters) is cut, ending in ``...``; a key MLflow
    refuses is left out (both are said in the log; ``config.json`` has them whole). The run id is kept in
    checkpoints, so a ``--recover``ed training continues the same run; params logged before keep their first
    value (MLflow cannot change one), epochs already logged are not logged again.

    After each epoch it logs every number of ``metrics_epoch_<N>.json`` (``training_loss``,
    ``validation_accuracy``, ``best_validation_accuracy``, ``best_epoch``, ``epoch``, ...) with step N, and
    ``learning_rate/group<i>``, the rate of each optimizer parameter group at the epoch's first optimizer step.
    With `validate_every_num_steps`, each validation's ``validation_*`` metrics are logged instead when it runs,
    with the number of optimizer steps so far as their step (as ``metrics_step_<S>.json`` names them). When
    training finishes it logs the ``test_*`` metrics (step: the last epoch), ``metrics.json`` as an artifact
    (the run's final metrics, as the command writes them), and with `log_model` the model archive, then ends the
    run as FINISHED; a run stopped by a signal (recoverable) ends as KILLED, one that crashed as FAILED.

    Config keys:
    - `tracking_uri` (str, null: MLflow's default: the ``MLFLOW_TRACKING_URI`` environment variable, else (MLflow
      3) ``./mlruns`` if it holds a file store, else ``sqlite:///mlflow.db`` in the working directory): where runs
      are kept: ``sqlite:///path/to/mlflow.db``, ``http(s)://host:port`` of an MLflow server, another database
      URI, or a directory (a path or ``file:`` URI; recent MLflow 3 releases refuse file stores unless
      ``MLFLOW_ALLOW_FILE_STORE=true``). A scheme MLflow does not support, a malformed URI or a local path that
      cannot be created is an error when the callback is built, before anything is trained or written; a server
      is first contacted when training starts.
    - `experiment_name` (str, null: the ``MLFLOW_EXPERIMENT_NAME`` (or ``MLFLOW_EXPERIMENT_ID``) environment
      variable, else MLflow's "Default" experiment): the MLflow experiment the run belongs to; created if missing.
    - `run_name` (str, null: the serialization directory's name): the run's name.
    - `tags` (dict[str, str], null): tags of the run, besides ``regimen.serialization_dir`` (the directory).
    - `log_model` (bool, false): log ``model.tar.gz`` (the model with its best weights, as ``regimen evaluate``
      loads it) as an artifact when training finishes. The command writes the archive after the callbacks'
      ``on_end``, so the callback builds it there with the same function and inputs (``best.th``, the config's
      `include_in_archive`); the command then writes the same archive again.

    MLflow failing while training (a server down, a full disk, a deleted store) is logged as one warning, and
    nothing more is logged to MLflow for the rest of that invocation, which trains and finishes as usual; the
    metrics are in the serialization directory. With a server, MLflow retries each request
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``) before that failure is reported.
    """

    def __init__(
        self,
        serialization_dir: str | None = None,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        log_model: bool = False,
    ) -> None:
        super().__init__(serialization_dir)
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigurationError(
                f'"mlflow" needs the mlflow package, which is not installed: {_INSTALL}', key="type"
            )
        if experiment_name is not None and not experiment_name.strip():
            raise ConfigurationError(
                "is empty: give a name, or leave it out for MLflow's default", key="experiment_name"
            )
        self.tracking_uri = checked_tracking_uri(tracking_uri)
        self.tags = dict(tags or {})
        _check_tags(self.tags)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.log_model = log_model
        self._client: Any = None  # an MlflowClient while logging works; None before, after and on other workers
        self._refused: set[str] = set()  # metric names MLflow refuses, each warned about once
        self._last_epoch_logged = -1
        self._validates_by_steps = False
        # What continues through checkpoints: the run, the optimizer steps taken, the rates of the current epoch.
        self._run_id: str | None = None
        self._step = 0
        self._rates_epoch: int | None = None
        self._rates: dict[str, float] = {}

    # ---- the hooks -----------------------------------------------------------------------------------------
    def on_start(self, trainer: Any, is_primary: bool = True, **kwargs: Any) -> None:
        if not is_primary:
            return
        self._validates_by_steps = getattr(trainer, "_validate_every_num_steps", None) is not None
        self._safely("starting the run", self._start_run)

    def on_batch(
        self,
        trainer: Any,
        batch_inputs: list[dict[str, Any]],
        batch_outputs: list[dict[str, Any]],
        batch_metrics: dict[str, Any],
        epoch: int,
        batch_number: int,
        is_training: bool,
        is_primary: bool = True,
        batch_grad_norm: float | None = None,
        **kwargs: Any,
    ) -> None:
        if not is_training:
            return
        self._step += 1
        if self._rates_epoch != epoch:  # the epoch's first step (its rates are checkpointed for a resume)
            self._rates_epoch, self._rates = epoch, learning_rates(trainer.optimizer)

    def on_validation_end(self, trainer: Any, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        if self._client is not None and self._validates_by_steps:
            self._safely("logging a validation", self._log_metrics, numbers_of(metrics), self._step)

    def on_epoch(
        self, trainer: Any, metrics: dict[str, Any], epoch: int, is_primary: bool = True, **kwargs: Any
    ) -> None:
        if self._client is None or epoch <= self._last_epoch_logged:  # logged before an interruption
            return
        values = numbers_of(metrics)
        if self._validates_by_steps:  # logged at each validation, with the step as their step
            values = {key: value for key, value in values.items() if not key.startswith("validation_")}
        if self._rates_epoch == epoch:
            values.update(self._rates)
        self._safely(f"logging epoch {epoch}", self._log_metrics, values, epoch)
        self._last_epoch_logged = epoch

    def on_end(
        self,
        trainer: Any,
        metrics: dict[str, Any] | None = None,
        epoch: int | None = None,
        is_primary: bool = True,
        **kwargs: Any,
    ) -> None:
        if self._client is None:
            return
        if metrics is not None:
            self._safely("logging the results", self._log_results, trainer, metrics, max(epoch or 0, 0))
            status = "FINISHED"
        else:  # on_end runs in the trainer's `finally`, while its exception is still the one being raised
            status = "KILLED" if isinstance(sys.exc_info()[1], TrainingPreempted) else "FAILED"
        if self._client is not None:  # not after a failure in logging the results
            self._safely("ending the run", self._client.set_terminated, self._run_id, status)
        self._client = None

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self._run_id, "step": self._step, "rates_epoch": self._rates_epoch, "rates": self._rates}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._run_id = state_dict["run_id"]
        self._step = state_dict["step"]
        self._rates_epoch = state_dict["rates_epoch"]
        self._rates = dict(state_dict["rates"])

    # ---- talking to MLflow ---------------------------------------------------------------------------------
    def _safely(self, doing: str, action: Callable[..., None], *args: Any) -> None:
        """Run an MLflow action; on the first failure warn once and log nothing more, so training goes on."""
        try:
            action(*args)
        except Exception as error:  # any failure of a tracker (HTTP, database, disk) must not stop training
            self._client = None
            where = f"in {self.serialization_dir}" if self.serialization_dir else "returned by the trainer"
            logger.warning(
                "MLflow: %s failed at %s (%s: %s); nothing more of this training is logged to MLflow (run %s), "
                "which goes on: its metrics are %s",
                doing, self.tracking_uri, type(error).__name__, _first_line(error), self._run_id or "not created",
                where,
            )  # fmt: skip

    def _start_run(self) -> None:
        from mlflow.tracking import MlflowClient  # the package is optional and slow to import

        client = MlflowClient(self.tracking_uri)
        directory = Path(self.serialization_dir).resolve() if self.serialization_dir is not None else None
        logged: dict[str, str] = {}
        if self._run_id is not None:  # a resumed training: its run goes on
            run = client.get_run(self._run_id)
            client.update_run(self._run_id, status="RUNNING")
            logged = run.data.params
            epochs = client.get_metric_history(self._run_id, "epoch")
            self._last_epoch_logged = max((metric.step for metric in epochs), default=-1)
        else:
            tags = {SERIALIZATION_DIR_TAG: str(directory), **self.tags} if directory is not None else self.tags
            name = self.run_name or (directory.name if directory is not None else None)
            run = client.create_run(self._experiment_id(client), run_name=name, tags=tags)
            self._run_id = run.info.run_id
        self._client = client
        config_file = directory / CONFIG_NAME if directory is not None else None
        if config_file is not None and config_file.is_file():
            self._log_params(json.loads(config_file.read_text()), logged)
            client.log_artifact(self._run_id, str(config_file))
        logger.info(
            "MLflow: logging to run %s (experiment %s) at %s", self._run_id, run.info.experiment_id, self.tracking_uri
        )

    def _experiment_id(self, client: Any) -> str:
        """The id of `experiment_name` (created if missing), else of MLflow's environment variables' or default."""
        name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if name is None and os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return os.environ["MLFLOW_EXPERIMENT_ID"]
        name = name or "Default"
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name)
        except Exception:  # made meanwhile by another run (the parallel trials of `regimen tune`)
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _log_params(self, config: dict[str, Any], logged: dict[str, str]) -> None:
        from mlflow.entities import Param
        from mlflow.utils import validation

        params, refused, cut, kept = [], [], [], []
        for key, value in flatten_config(config).items():
            if not _accepted(validation._validate_param_name, key, validation.MAX_ENTITY_KEY_LENGTH):
                refused.append(key)
                continue
            if len(value) > validation.MAX_PARAM_VAL_LENGTH:
                value = value[: validation.MAX_PARAM_VAL_LENGTH - 3] + "..."
                cut.append(key)
            if key not in logged:
                params.append(Param(key, value))
            elif logged[key] != value:  # a budget raised on --recover: MLflow keeps a param's first value
                kept.append(f"{key} (logged {logged[key]}, now {value})")
        for chunk in _chunks(params, validation.MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(self._run_id, params=chunk)
        for keys, what in (
            (refused, "are not logged as params: MLflow refuses their names"),
            (cut, "are cut to MLflow's length limit of a param"),
            (kept, "keep the values logged before the recovery (MLflow cannot change a param)"),
        ):
            if keys:
                logger.info("MLflow: config keys %s %s; the artifact config.json has them whole", ", ".join(keys), what)

    def _log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric
        from mlflow.utils import validation

        timestamp = int(time.time() * 1000)
        metrics = []
        for key, value in values.items():
            if _accepted(validation._validate_metric_name, key, validation.MAX_ENTITY_KEY_LENGTH):
                metrics.append(Metric(key, value, timestamp, step))
            elif key not in self._refused:
                self._refused.add(key)
                logger.warning("MLflow refuses the metric name %r, so it is not logged (rename the metric)", key)
        for chunk in _chunks(metrics, validation.MAX_METRICS_PER_BATCH):
            self._client.log_batch(self._run_id, metrics=chunk)

    def _log_results(self, trainer: Any, metrics: dict[str, Any], epoch: int) -> None:
        tests = {key: value for key, value in numbers_of(metrics).items() if key.startswith("test_")}
        self._log_metrics(tests, epoch)
        with tempfile.TemporaryDirectory() as temporary:  # metrics.json is written after on_end: the same text
            path = Path(temporary) / METRICS_NAME
            path.write_text(json.dumps(metrics, indent=4) + "\n")
            self._client.log_artifact(self._run_id, str(path))
        if self.log_model:
            self._client.log_artifact(self._run_id, str(self._archive(trainer)))

    def _archive(self, trainer: Any) -> Path:
        """``model.tar.gz`` as the command is about to write it after training (the same function and inputs)."""
        if self.serialization_dir is None:
            raise ValueError("log_model needs a serialization directory to archive the model in")
        directory = Path(self.serialization_dir)
        config = json.loads((directory / CONFIG_NAME).read_text())
        # The command archives best.th when there is one, else the model's weights (the best are restored now).
        weights: Any = BEST_WEIGHTS_NAME if (directory / BEST_WEIGHTS_NAME).is_file() else trainer.model.state_dict()
        return archive_model(directory, weights, config.get("include_in_archive"))


def checked_tracking_uri(uri: str | None) -> str:
    """``uri`` (None: MLflow's default) as an absolute URI, once it is one MLflow supports and a local store it
    names can be created; else a ConfigurationError at ``tracking_uri``. Contacts nothing, creates nothing."""
    import mlflow  # checked here, so that a mistake is shown before anything is trained

    origin = ""
    if uri is None:
        uri = mlflow.get_tracking_uri()
        variable = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else None
        origin = f" (from {variable})" if variable else " (MLflow's default)"
    if not uri.strip():
        raise ConfigurationError(f"is empty{origin}: give a tracking URI, or leave it out", key="tracking_uri")
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "" or (len(scheme) == 1 and scheme.isalpha()):  # a path (C: is a Windows drive)
        uri, scheme = Path(uri).expanduser().resolve().as_uri(), "file"
    unsupported = _unsupported_scheme(uri)
    if unsupported is not None:
        raise ConfigurationError(
            f'"{uri}"{origin} has the scheme "{scheme}", which MLflow tracking does not support; expected one of '
            f"{unsupported} (sqlite:///path/to/mlflow.db, http://host:port, a directory)",
            key="tracking_uri",
        )
    lowered = scheme.lower()
    if lowered == "file":
        return _checked_file_store(uri, origin)
    if lowered.startswith("sqlite"):
        return _checked_sqlite(uri, scheme, origin)
    if lowered in ("http", "https"):
        parsed = urllib.parse.urlparse(uri)
        try:
            parsed.port  # noqa: B018  (parsing the port is the check)
        except ValueError as error:
            raise ConfigurationError(f'"{uri}"{origin} is malformed: {error}', key="tracking_uri") from None
        if not parsed.hostname:
            raise ConfigurationError(f'"{uri}"{origin} names no host: write {lowered}://host:port', key="tracking_uri")
    return uri


def _unsupported_scheme(uri: str) -> list[str] | None:
    """The schemes MLflow's tracking supports when ``uri``'s is none of them (MLflow's own dispatch), else None."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry as registry
        from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
    except ImportError:  # another MLflow layout: the first request tells
        return None
    try:
        registry.get_store_builder(uri)
    except UnsupportedModelRegistryStoreURIException as error:
        return sorted(scheme for scheme in error.supported_uri_schemes if scheme)
    except Exception as error:  # MLflow cannot parse it
        raise ConfigurationError(f'"{uri}" is malformed: {_first_line(error)}', key="tracking_uri") from None
    return None


def _checked_file_store(uri: str, origin: str) -> str:
    parsed = urllib.parse.urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise ConfigurationError(f'"{uri}"{origin} names a host; a file store is a local directory', key="tracking_uri")
    path = Path(urllib.request.url2pathname(parsed.path)).resolve()
    problem = _cannot_create(path, directory=True)
    if problem:
        raise ConfigurationError(f'"{uri}"{origin}: {problem}', key="tracking_uri")
    from mlflow import environment_variables

    allowed = getattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE", None)  # MLflow 3's switch, if it has one
    if allowed is not None and not allowed.get():
        raise ConfigurationError(
            f'"{uri}"{origin} is a file store, which this MLflow refuses unless MLFLOW_ALLOW_FILE_STORE=true '
            f"(file stores are in maintenance mode): use a database, such as sqlite:///{path.parent / 'mlflow.db'}, "
            "or set MLFLOW_ALLOW_FILE_STORE=true",
            key="tracking_uri",
        )
    return path.as_uri()


def _checked_sqlite(uri: str, scheme: str, origin: str) -> str:
    prefix = f"{scheme}:///"
    file, _, query = uri[len(prefix) :].partition("?")
    if uri.partition("?")[0] in (f"{scheme}://", prefix) or file == ":memory:":
        raise ConfigurationError(
            f'"{uri}"{origin} is an in-memory database, lost when the process ends: name a file', key="tracking_uri"
        )
    if not uri.startswith(prefix):
        raise ConfigurationError(
            f'"{uri}"{origin} is malformed: write sqlite:///relative/path.db or sqlite:////absolute/path.db',
            key="tracking_uri",
        )
    path = Path(urllib.parse.unquote(file)).expanduser().resolve()
    problem = _cannot_create(path, directory=False)
    if problem:
        raise ConfigurationError(f'"{uri}"{origin}: {problem}', key="tracking_uri")
    return f"{prefix}{path}" + (f"?{query}" if query else "")


def _cannot_create(path: Path, directory: bool) -> str | None:
    """Why a store at ``path`` (a directory, or a database file) cannot be opened or created; None if it can."""
    if path.exists():
        if path.is_dir() != directory:
            return f"{path} is a {'file' if directory else 'directory'}, not a {'directory' if directory else 'file'}"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable"
        return None
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"it cannot be created: {ancestor} is a file, not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"it cannot be created: {ancestor} is not writable"
    return None


def _check_tags(tags: dict[str, str]) -> None:
    from mlflow.utils import validation

    for key, value in tags.items():
        if not _accepted(validation._validate_tag_name, key, validation.MAX_ENTITY_KEY_LENGTH):
            raise ConfigurationError(
                "is not a tag name MLflow accepts: letters, digits, _ - . / : and spaces, a relative path of at "
                f"most {validation.MAX_ENTITY_KEY_LENGTH} characters",
                key=f"tags.{key}",
            )
        if len(value) > validation.MAX_TAG_VAL_LENGTH:
            raise ConfigurationError(
                f"is {len(value)} characters long; MLflow keeps at most {validation.MAX_TAG_VAL_LENGTH}",
                key=f"tags.{key}",
            )


def _accepted(validate: Callable[[str], None], name: str, max_length: int) -> bool:
    """Whether MLflow accepts ``name`` as a param, metric or tag name (its own check, and its length limit)."""
    try:
        validate(name)
    except Exception:
        return False
    return len(name) <= max_length


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to values: objects are flattened (``trainer.optimizer.lr``), as are lists holding objects or
    lists (``trainer.callbacks.0.type``); other values are strings, JSON but for strings (``[8]``, ``true``)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
            value = dict(enumerate(value))
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{path}."))
        else:
            flat[path] = value if isinstance(value, str) else json.dumps(value)
    return flat


def numbers_of(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a metrics dict (durations are strings, and booleans are not metrics)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def learning_rates(optimizer: Any) -> dict[str, float]:
    """``learning_rate/group<i>`` of each parameter group of the optimizer, as the tensorboard callback names them."""
    groups = getattr(optimizer, "param_groups", [])
    return {f"learning_rate/group{index}": float(group["lr"]) for index, group in enumerate(groups) if "lr" in group}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
