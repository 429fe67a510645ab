"""MLflow (`pip install -e ".[mlflow]"`): one MLflow run per run directory, resumed with it.

The tracking store is `MLFLOW_TRACKING_URI` when set, else SQLite in `LOG_DIR/mlflow.db` with artifacts in
`LOG_DIR/mlartifacts`: MLflow's recommended local backend (its older `./mlruns` file store is in maintenance mode and
refused by default). `mlflow ui --backend-store-uri sqlite:///LOG_DIR/mlflow.db` shows it. The experiment is the
run's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from gan_lightning.core.files import data_lock
from gan_lightning.loggers.base import (
    LOGGERS,
    RunLocation,
    Tracker,
    file_name,
    flat_config,
    record_run_id,
    recorded_run_id,
)

SQLITE = "sqlite:///"  # a local SQLite store's URI: this prefix, then the database's path
RUN_ID_FILE = "mlflow_run_id"  # in the run directory: a restart continues the same MLflow run


class GANMLFlowLogger(MLFlowLogger):
    """MLFlowLogger whose parameters are written once: MLflow refuses to change a logged parameter, and a resumed
    run may carry changed flags (config_changes.yaml records those, and is logged as an artifact).

    `users_tracking_uri` is `MLFLOW_TRACKING_URI` as the user set it (None: unset) before this run: Lightning's
    `experiment` sets the variable to the run's store, and `MLflowTracker.finished` puts the user's back, so a
    second run in the process (a notebook, the Python API) does not take the first one's store for the user's."""

    def __init__(self, *args: Any, users_tracking_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.users_tracking_uri = users_tracking_uri

    @rank_zero_only  # as Lightning's own: other ranks hold a dummy experiment
    def log_hyperparams(self, params: Any) -> None:
        """Log the parameters this MLflow run does not hold yet."""
        held = self.experiment.get_run(self.run_id).data.params
        # Lightning passes an AttributeDict (a dict with a __dict__ of its own): read it as the mapping it is
        params = dict(params) if isinstance(params, Mapping) else vars(params)
        params = {k: v for k, v in flat_config(params).items() if k not in held}
        if params:
            super().log_hyperparams(params)


@LOGGERS.register("mlflow")
class MLflowTracker(Tracker):
    """MLflow: scalars as metrics, grids and texts as artifacts under `images/` and `text/`."""

    logger_class = MLFlowLogger
    requires = "mlflow"
    extra = "mlflow"

    def build(self, run: RunLocation, config: Mapping[str, Any]) -> Logger:
        """A logger continuing the MLflow run this run directory recorded, else starting one."""
        root = Path(run.log_dir).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE}{root / 'mlflow.db'}"
        # artifacts beside the store, not in the working directory (MLflow's default for a new experiment)
        artifacts = None if os.environ.get("MLFLOW_TRACKING_URI") else (root / "mlartifacts").as_uri()
        # every process building a client creates or migrates a local SQLite store, which two at once break (DDP
        # ranks, jobs sharing a --log-dir or an MLFLOW_TRACKING_URI): they take turns, by a lock beside the database
        database = Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None
        with data_lock(database.parent, name=f".{database.name}.lock") if database else nullcontext():
            return self.client(run, uri, artifacts)

    def client(self, run: RunLocation, uri: str, artifacts: str | None) -> Logger:
        """The logger of the MLflow run this run directory recorded (else a new one) in the store at `uri`."""
        return GANMLFlowLogger(experiment_name=run.name, run_name=f"{run.name}/version_{run.version}", tracking_uri=uri,
                               run_id=recorded_run_id(run, RUN_ID_FILE), artifact_location=artifacts,
                               users_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))  # fmt: skip

    def image(self, logger: Logger, tag: str, grid: torch.Tensor, step: int) -> None:
        """`images/<tag>_<step>.png`, an artifact of the run."""
        array = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, C)
        name = f"images/{file_name(tag, step, 'png')}"
        logger.experiment.log_image(logger.run_id, array.squeeze(-1) if array.shape[-1] == 1 else array, name)

    def text(self, logger: Logger, tag: str, text: str, step: int) -> None:
        """`text/<tag>_<step>.md`, an artifact of the run."""
        logger.experiment.log_text(logger.run_id, text, f"text/{file_name(tag, step, 'md')}")

    def started(self, logger: Logger, run: RunLocation, config: Mapping[str, Any]) -> None:
        """Record the MLflow run's id in the run directory, and log the run's config as parameters."""
        record_run_id(run, RUN_ID_FILE, logger.run_id)
        super().started(logger, run, config)
        changes = run.run_dir / "config_changes.yaml"
        if changes.is_file():
            logger.experiment.log_artifact(logger.run_id, str(changes))

    def finished(self, logger: Logger) -> None:
        """Put `MLFLOW_TRACKING_URI` back as the user had it before this run (Lightning's logger set it)."""
        import mlflow

        # MLflow's own module state and the variable together (None unsets both); typed str, None is documented
        mlflow.set_tracking_uri(getattr(logger, "users_tracking_uri", None))  # type: ignore[arg-type]
