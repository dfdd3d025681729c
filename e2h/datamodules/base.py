"""What every e2h DataModule shares: tokenising with the model's tokenizer unless one is named."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from transformers import PreTrainedTokenizerBase


class TokenizingDataModule(LightningDataModule):
    def __init__(self, tokenizer: str | None = None) -> None:
        super().__init__()
        self.tokenizer_name = tokenizer
        self._tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """`tokenizer` (``char`` or a path/id) if given, else the attached model's own tokenizer."""
        if self._tokenizer is None:
            if self.tokenizer_name is not None:
                from e2h.text.tokenizer import load_tokenizer

                self._tokenizer = load_tokenizer(self.tokenizer_name)
            elif self.trainer is not None and hasattr(self.trainer.lightning_module, "tokenizer"):
                self._tokenizer = self.trainer.lightning_module.tokenizer
            else:
                raise RuntimeError(
                    f"{type(self).__name__} needs a tokenizer: attach it to a trainer or set `tokenizer`"
                )
        return self._tokenizer
