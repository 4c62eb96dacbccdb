"""What every decodable model looks like to the engine: a spec of its special ids and a logits callable."""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch

from engine.models.forward_pool import ForwardPool


@dataclass(frozen=True)
class ModelSpec:
    name: str  # name on the CLI / in the app: "bundled", "tiny-random" or an allowlisted Hub id
    mask_id: int  # the [MASK] token id the model was trained with
    eos_ids: tuple[int, ...]  # end-of-answer ids; the first pads answers and triggers early stop
    shift: bool  # Dream-style alignment: logits[i-1] predict position i
    max_length: int  # context length in tokens (prompt + answer)
    description: str = ""  # one line for the model picker

    def __post_init__(self) -> None:
        if not self.eos_ids:
            raise ValueError(f"model {self.name!r}: eos_ids must name at least one id")
        if self.max_length < 2:
            raise ValueError(f"model {self.name!r}: max_length={self.max_length} must be >= 2")

    @property
    def eos_id(self) -> int:
        return self.eos_ids[0]


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids downloads (tests and CI set it)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def pick_device_dtype(device: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
    """CUDA in bfloat16 when present, else CPU in float32."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                           else "cpu")
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


class LoadedModel:
    """A model wrapped once: call it on ids (B, L) to get float32 logits (B, L, V)."""

    def __init__(self, spec: ModelSpec, model: torch.nn.Module, tokenizer, device: torch.device,
                 dtype: torch.dtype, graph_safe: bool = True) -> None:
        self.spec, self.model, self.tokenizer, self.device, self.dtype = spec, model, tokenizer, device, dtype
        self.graph_safe = graph_safe  # its forward can be captured as a CUDA graph (our own and native models)
        # CachedForwards of earlier decodes, reused by later ones (engine/pipeline.py); they refer to this object, and
        # the collector frees them with it.
        self.cached_forwards = ForwardPool(collect=device.type == "cuda")
        self.model.eval()
        # transformers' own models can run the LM head on chosen rows only; remote-code models may not.
        self._keeps_rows = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids.to(self.device)).logits.float()  # (B, L, V)

    @torch.no_grad()
    def block_logits(self, ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Logits of rows start..stop-1 only (B, stop - start, V): the decoding loop needs the current block's rows,
        and the vocabulary-wide head on every row is a large share of a small model's step."""
        if not self._keeps_rows:
            return self(ids)[:, start:stop]
        rows = torch.arange(start, stop, device=self.device)
        return self.model(input_ids=ids.to(self.device), logits_to_keep=rows).logits.float()  # (B, Lb, V)

    def need_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise ValueError(f"model {self.spec.name!r} was loaded from a folder without tokenizer files "
                             "(tokenizer.json, tokenizer_config.json); it gives logits for token ids only: add the "
                             "tokenizer files to the folder to chat with it")

    def encode_prompt(self, text: str) -> torch.Tensor:
        """Chat-template the user's text (with the generation prompt) into ids (1, P) on the model's device."""
        self.need_tokenizer()
        if not text or not text.strip():
            raise ValueError("prompt is empty; type a question or pick an example")
        messages = [{"role": "user", "content": text}]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=False)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return torch.tensor([list(ids)], dtype=torch.long, device=self.device)

    def answer_ids(self, tokens: torch.Tensor | list[int]) -> list[int]:
        """The answer's ids up to (not including) the first EOS."""
        ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
        stops = [i for i, t in enumerate(ids) if t in self.spec.eos_ids]
        return ids[:stops[0]] if stops else ids

    def decode_answer(self, tokens: torch.Tensor | list[int]) -> str:
        self.need_tokenizer()
        return self.tokenizer.decode(self.answer_ids(tokens), skip_special_tokens=True)

    def token_text(self, ids) -> dict[int, str]:
        """Display strings for ids (for traces that must render without the model)."""
        self.need_tokenizer()
        return {int(i): self.tokenizer.decode([int(i)]) for i in ids}
