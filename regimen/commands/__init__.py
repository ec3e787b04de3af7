"""The command line: ``regimen COMMAND ...``, one registered Subcommand per command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from regimen.commands import (  # noqa: F401  (each registers its command)
    best_params,
    describe,
    evaluate,
    list_components,
    print_config,
    print_results,
    retrain,
    schema,
    train,
    tune,
)
from regimen.commands.subcommand import Subcommand
from regimen.registry import ConfigurationError, import_module_and_submodules, import_plugins

EXIT_CONFIGURATION_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered Subcommand."""
    parser = argparse.ArgumentParser(prog="regimen", description="Train PyTorch models from Jsonnet experiment files.")
    from regimen import __version__

    parser.add_argument("--version", action="version", version=f"regimen {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in sorted(Subcommand.list_available()):
        Subcommand.by_name(name)().add_subparser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a ConfigurationError prints one message and exits with status 2."""
    logging.basicConfig(
        level=os.environ.get("REGIMEN_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import_plugins()
        parser = build_parser()
        args = parser.parse_args(argv)
        if not hasattr(args, "func"):
            parser.print_help()
            return 0
        for package in getattr(args, "include_package", []):
            import_module_and_submodules(package)
        code = int(args.func(args) or 0)
        _leave_if_a_worker(code)
        return code
    except ConfigurationError as error:
        if os.environ.get("REGIMEN_DEBUG") == "1":
            traceback.print_exc()
        print(f"regimen: configuration error: {error}", file=sys.stderr)
        _leave_if_a_worker(EXIT_CONFIGURATION_ERROR)
        return EXIT_CONFIGURATION_ERROR


def _leave_if_a_worker(code: int) -> None:
    """A command that ran as a worker of a torch.distributed group (one started by torchrun) ends here, with its
    exit status but without the interpreter's teardown, which can abort such a process (see
    ``regimen.trainers.distributed.leave_at_once``). Every other command returns as usual."""
    distributed = sys.modules.get("regimen.trainers.distributed")  # not imported: no group was joined
    if distributed is not None and distributed.ProcessGroupDistributed.joined:
        distributed.leave_at_once(code)
