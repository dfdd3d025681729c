"""`e2h export CKPT OUT`: a Lightning checkpoint as a Hugging Face model folder (weights, config, tokenizer).

The folder loads with `transformers.AutoModelForCausalLM.from_pretrained(OUT)`, with vLLM, and as the
`model:` of any e2h stage.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

import torch


def module_class(checkpoint: dict, override: str | None = None) -> type:
    """The LightningModule class that wrote a checkpoint (recorded by e2h modules), or `override`."""
    path = override or checkpoint.get("e2h_module")
    if not path:
        raise ValueError("the checkpoint does not name its module class (not written by e2h?); pass --module")
    module_name, _, class_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def export_checkpoint(ckpt_path: str, out_dir: str, module: str | None = None) -> None:
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cls = module_class(checkpoint, module)
    # LightningCLI adds bookkeeping entries (_class_path, _instantiator) that are not init arguments.
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    pl_module = cls(**hparams)
    pl_module.configure_model()
    pl_module.load_state_dict(checkpoint["state_dict"])
    pl_module.save_hf(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2h export", description=__doc__)
    parser.add_argument("checkpoint", help="a Lightning .ckpt written by e2h fit")
    parser.add_argument("out", help="folder to write the Hugging Face model into")
    parser.add_argument("--module", help="module class path, if the checkpoint does not record it")
    args = parser.parse_args(argv)
    export_checkpoint(args.checkpoint, args.out, args.module)
    print(f"wrote a Hugging Face model folder to {args.out}")
    return 0
