"""Run by tests/test_uds_distributed.py, under torchrun (two CPU processes, gloo) and alone: UDSTrainer on the tiny
model, saving for this process, after every selection step, its buffer of kept sketches and the step's picks, and at
the end its trained adapter weights.

    python tests/uds_ddp_probe.py OUT GROUPS        # GROUPS groups of B = 4 per process and micro-batch
"""
import sys
from pathlib import Path

import numpy as np
from transformers import TrainerCallback, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `engine`

from engine.uds import SelectionConfig, TrainConfig, UDSTrainer  # noqa: E402
from engine.uds.batching import as_item, encode  # noqa: E402
from engine.uds.data import bundled_dataset  # noqa: E402
from engine.models.tiny import tiny_causal  # noqa: E402
from engine.uds.run import prepare_trainable  # noqa: E402


class BufferRecorder(TrainerCallback):
    """This process's buffer and every process's picks after each selection step."""

    def __init__(self) -> None:
        self.trainer = None
        self.buffers: list[np.ndarray] = []
        self.picks: list[list[str]] = []

    def on_selection(self, args, state, control, step) -> None:
        # The buffer as this step left it: later micro-batches of the same optimizer step are already selected.
        self.buffers.append(self.trainer.online_selection.buffer.embeddings()[: step.buffer_size].numpy())
        self.picks.append([c.sample_id for p in step.picks for c in p.candidates if c.selected])


def main(out: Path, groups: int) -> None:
    base, tokenizer = tiny_causal("cpu")
    model = prepare_trainable(base, TrainConfig(seed=21))
    items = [as_item(e) for e in (encode(tokenizer, s, 64) for s in bundled_dataset().train[::7][:64])
             if len(e.ids) > e.prompt_len]
    args = TrainingArguments(output_dir=str(out / "trainer"), per_device_train_batch_size=4 * groups,
                             gradient_accumulation_steps=2, max_steps=3, learning_rate=2e-2, use_cpu=True,
                             report_to="none", disable_tqdm=True, save_strategy="no", seed=21)
    recorder = BufferRecorder()
    trainer = UDSTrainer(model, args, items, SelectionConfig(batch=4, keep=1), processing_class=tokenizer,
                         callbacks=[recorder])
    recorder.trainer = trainer
    trainer.train()
    weights = {name: p.detach().numpy() for name, p in model.named_parameters() if p.requires_grad}
    np.savez(out / f"rank{args.process_index}.npz", picks=np.array(recorder.picks),
             **{f"buffer{i}": b for i, b in enumerate(recorder.buffers)}, **{f"w:{k}": v for k, v in weights.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
