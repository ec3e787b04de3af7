"""The ``evaluate`` command: a trained model's metrics (and optionally its outputs) on a data path."""

from __future__ import annotations

import argparse
import json

from regimen.commands.subcommand import Subcommand, add_common_arguments
from regimen.registry import ConfigurationError


@Subcommand.register("evaluate")
class Evaluate(Subcommand):
    """Evaluate an archive (``model.tar.gz``, or a run directory) on data read as its validation data was.

    The data is read with the archived config's ``validation_dataset_reader`` (else ``dataset_reader``) and
    batched with its ``validation_data_loader`` (else ``data_loader``) config, in file order. The input is handed
    to the reader as given (a file, a URL, or whatever the reader reads), after the reader's ``check_data_path``,
    as the experiment's data paths are. Prints the metrics as JSON; ``--output-file`` writes them too,
    ``--predictions-output-file`` writes one JSON line per instance with the model's outputs.
    """

    description = "Evaluate a trained model (model.tar.gz or a run directory) on a data path."

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        subparser = parser.add_parser("evaluate", description=self.description, help=self.description)
        subparser.add_argument("archive_file", help="model.tar.gz, or a run's serialization directory")
        subparser.add_argument(
            "input_file", help="the data to evaluate on: a file, a URL, or whatever the archived reader reads"
        )
        subparser.add_argument("--output-file", help="write the metrics to this JSON file")
        subparser.add_argument("--predictions-output-file", help="write one JSON line of outputs per instance")
        subparser.add_argument("--cuda-device", type=int, default=-1, help="the CUDA device (default -1: the CPU)")
        subparser.add_argument("--batch-size", type=int, help="instances per batch (default: the archived config's)")
        add_common_arguments(subparser)
        subparser.set_defaults(func=self.run)
        return subparser

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from regimen.data import DataLoader, DatasetReader
        from regimen.models.archival import load_archive
        from regimen.registry.params import write_json_atomically
        from regimen.trainers.evaluation import evaluate
        from regimen.trainers.trainer import resolve_device

        if args.batch_size is not None and args.batch_size < 1:
            raise ConfigurationError(f"--batch-size must be positive, got {args.batch_size}")
        device = resolve_device(args.cuda_device)
        archive = load_archive(args.archive_file, args.cuda_device, args.overrides)
        config = archive.config
        reader_params = config.get("validation_dataset_reader") or config.get("dataset_reader")
        reader = DatasetReader.from_params(reader_params.duplicate())
        error = reader.check_data_path(args.input_file)
        if error is not None:
            raise error.located("input_file")
        loader_params = (config.get("validation_data_loader") or config.get("data_loader")).duplicate()
        for key in ("shuffle", "batches_per_epoch"):  # file order, one pass: predictions line up with the input
            loader_params.pop(key, None)
        if args.batch_size is not None:
            target = loader_params.get("batch_sampler") or loader_params
            target["batch_size"] = args.batch_size
        loader = DataLoader.from_params(loader_params, reader=reader, data_path=args.input_file)
        metrics = evaluate(archive.model, loader, device, args.predictions_output_file)
        if args.output_file:
            write_json_atomically(args.output_file, metrics)
        print(json.dumps(metrics, indent=4))
        return 0
