"""The `e2h` command.

``e2h fit|validate|test|predict --config ...`` is a LightningCLI: models and data modules are chosen with
``class_path``/``init_args`` in YAML, several ``--config`` files compose left to right, and
``--print_config`` shows the resolved configuration. ``e2h data ...`` holds the data tools
(synthetic benchmark, PRM800K conversion, dataset statistics); ``e2h export`` turns a checkpoint into a
Hugging Face model folder.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI

from e2h.cli.parser_errors import ConciseArgumentParser
from e2h.data.errors import UserError
from e2h.data.files import require_local_path
from e2h.training.run_folder import remove_unused_log_folder, run_logger

DESCRIPTION = (
    "e2h: easy-to-hard generalization trainer. Subcommands fit, validate, test and predict run Lightning "
    "stages from YAML configs (--config configs/tiny/sft.yaml). Data tools: `e2h data --help`; checkpoint export: `e2h export --help`."
)


# Module arguments that name a Hugging Face folder (or hub id) to load.
MODEL_PATH_ARGS = ("model", "tokenizer", "policy", "reward_model", "value_model")


class E2HCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # A config that names no logger logs under the run's folder (default_root_dir/tb), so that one option,
        # --trainer.default_root_dir, moves a run's logs, checkpoints and export together.
        trainer = self._get(self.config_init, "trainer", default={})
        if trainer.get("logger") in (None, True):
            kwargs.setdefault("logger", run_logger(trainer.get("default_root_dir")))
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        # A model folder that does not exist is named here, in one line: found while the module is built,
        # jsonargparse would bury it in a dump of every class the model could have been.
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        init_args = config.get("model", {}).get("init_args") or {}
        for key in MODEL_PATH_ARGS:
            value = init_args.get(key)
            if isinstance(value, str) and value != "char":
                require_local_path(value, f"model.init_args.{key}")

    def parse_arguments(self, parser, args) -> None:
        # The parser's one-line errors say which config file (and line) or option set a bad value.
        ConciseArgumentParser.command_line = list(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            remove_unused_log_folder(self.trainer)
            raise

    def _parse_ckpt_path(self) -> None:
        # LightningCLI would replace the configured model arguments by those saved in --ckpt_path,
        # silently undoing e.g. sampling settings given on the command line. In e2h the config states
        # the module; the checkpoint supplies weights and training state only.
        return


def build_cli(args: Sequence[str] | None = None, run: bool = True) -> LightningCLI:
    """The LightningCLI; with run=False it only parses and instantiates (no subcommand), as tests do."""
    return E2HCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=list(args) if args is not None else None,
        run=run,
        parser_class=ConciseArgumentParser,
        # allow_abbrev off: argparse would take --trainer.max_step as a prefix of --trainer.max_steps
        parser_kwargs={"description": DESCRIPTION, "allow_abbrev": False},
        save_config_kwargs={"overwrite": True},
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message is emitted (not when the handler was made)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_e2h_logs() -> None:
    """Print e2h's own INFO messages (counts of held-out problems removed, records excluded, samples already
    complete...) on stderr, one line each; other libraries' logging is left as they set it."""
    logger = logging.getLogger("e2h")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("e2h: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def lists_replace(args: list[str]) -> list[str]:
    """Make a list of mappings given on the command line replace the configured list.

    jsonargparse fills each element of such a list (``--data.init_args.train '[{kind: steps, path: X}]'``)
    with the fields of the element at the same place in the YAML, so the user's list silently inherits levels,
    error kinds... it never stated. Setting the option to null first leaves nothing to inherit. ``--key+=``
    (append) is left alone.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        key, value = arg, None
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
        elif arg.startswith("--") and i + 1 < len(args):
            value = args[i + 1]
        if value is not None and key != "--config" and not key.endswith("+") and value.lstrip().startswith("[{"):
            out += [key, "null"]
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The `e2h` command; a `UserError` (bad input, a refused run) is one ``error:`` line and exit status 2."""
    show_e2h_logs()
    try:
        return _dispatch(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _dispatch(argv: Sequence[str] | None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "data":
        from e2h.cli.data import main as data_main

        return data_main(args[1:])
    if args and args[0] == "export":
        from e2h.cli.export import main as export_main

        return export_main(args[1:])
    args = lists_replace(args)
    # LightningCLI reads sys.argv itself when given None (and warns when given both).
    if argv is None:
        sys.argv[1:] = args
    build_cli(None if argv is None else args)
    return 0
