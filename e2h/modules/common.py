"""Pieces every e2h LightningModule shares: the injected optimizer and schedule, the non-finite stop, the
Hugging Face export."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from e2h.data.files import atomic_folder
from e2h.text.packing import block_causal_mask
from e2h.training.strategies import full_state_dict, gathered_parameters, unwrapped


def optimizer_config(
    params: Iterable[Any], optimizer_factory: Callable, scheduler_factory: Callable | None, trainer: Trainer
) -> Any:
    """What `configure_optimizers` returns: the injected optimizer, and its schedule stepped every step.

    `e2h.training.schedules.WarmupCosineLR` with `total_steps: null` runs until the end: it is told the trainer's
    estimated number of steps here.
    """
    optimizer = optimizer_factory(params)
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer)
    if getattr(scheduler, "total_steps", 0) is None:
        scheduler.set_total_steps(int(trainer.estimated_stepping_batches))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def stop_if_not_finite(value: torch.Tensor | None, what: str, step: int, advice: str = "") -> None:
    """Raise FloatingPointError naming `what` when `value` holds NaN or inf.

    Modules call it from `on_before_optimizer_step`: one host-device sync per optimizer step, and a
    non-finite loss never reaches the weights or a checkpoint (the last checkpoint stays as it was).
    """
    if value is not None and not bool(torch.isfinite(value).all()):
        raise FloatingPointError(
            f"{what} is {value.item() if value.numel() == 1 else 'not finite'} at step {step}; stopping before the "
            f"optimizer step (the last checkpoint is kept as it was).{' ' + advice if advice else ''}"
        )


def _any_rank(module: LightningModule, flag: bool) -> bool:
    """Whether `flag` holds on any rank (so every rank stops together instead of the others waiting)."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return flag
    total = trainer.strategy.reduce(torch.tensor(float(flag), device=module.device), reduce_op="sum")
    return bool(total > 0)


def _not_finite(tensors: list[torch.Tensor]) -> bool:
    # one fused norm per dtype group and one host sync: a NaN or inf anywhere makes the total non-finite
    tensors = [t for t in tensors if t.numel()]
    if not tensors:
        return False
    norms = torch._foreach_norm(tensors)
    return not bool(torch.isfinite(torch.stack([n.float() for n in norms]).sum()))


def stop_if_gradients_not_finite(module: LightningModule, what: str) -> None:
    """Raise FloatingPointError before the optimizer step when a gradient holds NaN or inf: a finite loss can
    still have non-finite gradients, and stepping on them would write non-finite weights. Mixed fp16 training
    is skipped (its gradient scaler finds and skips such steps itself)."""
    trainer = module._trainer
    if trainer is not None and str(trainer.precision).startswith("16"):
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if _any_rank(module, _not_finite(grads)):
        raise FloatingPointError(
            f"{what}: a gradient is not finite at step {module.global_step} although the loss is; stopping before "
            "the optimizer step (the last checkpoint is kept as it was). Lower the learning rate or clip gradients."
        )


def stop_if_weights_not_finite(module: LightningModule, what: str) -> None:
    """Raise FloatingPointError when a weight holds NaN or inf. Modules call it before a checkpoint or an
    export is written, so neither ever holds a broken model and the last good checkpoint survives (the
    checkpoint callback only rotates old checkpoints after a new one is written)."""
    if _any_rank(module, _not_finite([p.detach() for p in module.parameters()])):
        raise FloatingPointError(
            f"{what}: the weights are not finite after step {module.global_step} (the last optimizer step made them "
            "so); nothing is saved and the last checkpoint is kept as it was. Lower the learning rate."
        )


def write_hf_folder(pl_module: LightningModule, attr: str, folder: str) -> None:
    """Write `pl_module.<attr>` (a Hugging Face model) and the module's tokenizer as a folder that
    `from_pretrained` loads.

    Under FSDP or ZeRO-3 every rank must call it (the weights are gathered); global rank 0 writes. The
    folder is filled under a temporary name and renamed, so it is never left half-written.
    """
    model = getattr(pl_module, attr)
    stop_if_weights_not_finite(pl_module, f"export to {folder}")
    state_dict = full_state_dict(pl_module, attr)  # FSDP: gathered here; None otherwise
    trainer = pl_module._trainer
    writer = trainer is None or trainer.is_global_zero
    with gathered_parameters(model) if state_dict is None else contextlib.nullcontext():  # ZeRO-3: gathered here
        if writer:
            with atomic_folder(folder) as tmp:
                unwrapped(model).save_pretrained(tmp, state_dict=state_dict)
                pl_module.tokenizer.save_pretrained(tmp)


def forward_batch(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> Any:
    """`model`'s output for a padded batch, or a packed one (which carries `sequence_ids`: its examples are
    kept apart by a block-causal mask)."""
    attention_mask = batch["attention_mask"]
    if "sequence_ids" in batch:
        attention_mask = block_causal_mask(batch["sequence_ids"], model.dtype)
    return model(input_ids=batch["input_ids"], attention_mask=attention_mask, position_ids=batch.get("position_ids"))


def check_budget(module: LightningModule, split: str, max_new_tokens: int, setting: str, mode: str) -> None:
    """Compare a generation budget with the reference solutions of the data module's `split`
    (`e2h.eval.budget.check_generation_budget`): raise when most of a level's cannot fit, warn when some
    cannot (`mode`: error, warn or off). Data modules without reference solutions (or without
    `reference_lengths`) are not checked."""
    from lightning.pytorch.utilities import rank_zero_warn

    from e2h.eval.budget import check_generation_budget

    datamodule = getattr(module.trainer, "datamodule", None)
    lengths = getattr(datamodule, "reference_lengths", None)
    if lengths is None:
        return
    if mode == "off":
        return
    message = check_generation_budget(lengths(split), max_new_tokens, f"{setting} (the {split} split)", mode)
    if message:
        rank_zero_warn(message)


def drop_frozen(checkpoint: dict[str, Any], frozen: Sequence[str]) -> None:
    """Leave the weights of frozen models (attributes named in `frozen`) out of a checkpoint: they are
    re-read from their paths when the module is built."""
    state = checkpoint.get("state_dict")
    if state is not None:
        for key in [k for k in state if k.split(".", 1)[0] in frozen]:
            del state[key]


def with_frozen(module: LightningModule, state_dict: Mapping[str, Any], frozen: Sequence[str]) -> Mapping[str, Any]:
    """`state_dict` completed with the frozen models' weights as `module` holds them (built from their paths),
    so that a strict load of a checkpoint without them still checks every trained weight."""
    if not any(k.split(".", 1)[0] not in frozen for k in state_dict):
        return state_dict
    state_dict = dict(state_dict)
    for key, value in LightningModule.state_dict(module).items():
        if key.split(".", 1)[0] in frozen:
            state_dict.setdefault(key, value)
    return state_dict
