"""The eval table: the dLLM under each decoding rule and the AR teacher, on the held-out sets.

Questions are decoded in left-padded batches (padding key-masked, positions counted per row), which gives each row
the logits it would get alone. A row's NFE is the number of forward passes that committed at least one of its
tokens: exactly its NFE if decoded alone, since a row that has finished its block commits nothing while it waits.
"""
from __future__ import annotations

import numpy as np
import torch

from engine.bench.metrics import answer_correct, is_degenerate
from engine.decoding import Rule, generate, parse_rule_spec
from lab.bundled.data import Example
from lab.bundled.teacher import teacher_answers
from lab.bundled.tokens import left_pad, prompt_ids

RULES = ("low_confidence", "threshold", "credit")  # registry rule specs: fixed steps (steps = gen_length), tau 0.9,
#                                                   credit with its default preset


def make_rule(spec: str, gen_length: int) -> Rule:
    return parse_rule_spec(spec, steps=gen_length, threshold=0.9)


@torch.no_grad()
def dllm_answers(model, tokenizer, prompts: list[str], rule_name: str, gen_length: int, block_length: int,
                 mask_id: int, eos_id: int, shift: bool, batch_size: int) -> list[dict]:
    """Per prompt: answer text, its NFE and whether it holds an EOS inside the canvas."""
    device = next(model.parameters()).device
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[dict] = [{}] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, prompt_keys, _ = left_pad([encoded[i] for i in chunk], eos_id, device)
        keys = torch.cat([prompt_keys, torch.ones(len(chunk), gen_length, dtype=torch.long, device=device)], 1)
        positions = (keys.cumsum(dim=1) - 1).clamp(min=0)  # (B, P + G)

        def model_fn(x: torch.Tensor) -> torch.Tensor:
            return model(input_ids=x, attention_mask=keys, position_ids=positions).logits  # (B, P + G, V)

        out = generate(model_fn, ids, make_rule(rule_name, gen_length), gen_length=gen_length,
                       block_length=block_length, mask_id=mask_id, eos_id=eos_id, shift=shift, record_trace=False)
        for row, index in enumerate(chunk):
            tokens = out.tokens[row].tolist()
            steps = out.commit_step[row]
            has_eos = eos_id in tokens
            text = tokenizer.decode(tokens[:tokens.index(eos_id)] if has_eos else tokens, skip_special_tokens=True)
            results[index] = {"text": text.strip(), "nfe": int(np.unique(steps[steps >= 0]).size),
                              "eos": has_eos}
    return results


def summarise(examples: list[Example], answers: list[dict]) -> dict:
    graded = bool(examples and examples[0].answer)
    correct = [answer_correct(a["text"], e.answer) for e, a in zip(examples, answers)] if graded else []
    return {"accuracy": float(np.mean(correct)) if graded else None,
            "mean_nfe": float(np.mean([a["nfe"] for a in answers])) if answers and "nfe" in answers[0] else None,
            "eos_share": float(np.mean([a["eos"] for a in answers])),
            "degenerate_share": float(np.mean([is_degenerate(a["text"]) for a in answers])),
            "n": len(answers)}


def evaluate(dllm, teacher, tokenizer, sets: dict[str, list[Example]], mask_id: int, eos_id: int, shift: bool,
             gen_lengths: tuple[int, ...], block_length: int, batch_size: int, log=print) -> tuple[list[dict], dict]:
    """(table rows, sample answers per set and rule). One row per set x gen_length x (3 rules + AR teacher);
    `teacher=None` leaves the AR teacher's rows out (a second arm of a comparison needs them only once)."""
    rows, samples = [], {}
    for name, examples in sets.items():
        prompts = [e.prompt for e in examples]
        for gen_length in gen_lengths:
            for rule in RULES:
                answers = dllm_answers(dllm, tokenizer, prompts, rule, gen_length, block_length, mask_id, eos_id,
                                       shift, batch_size)
                rows.append({"set": name, "gen_length": gen_length, "decoder": rule,
                             **summarise(examples, answers)})
                samples[f"{name}/{gen_length}/{rule}"] = [(p, a["text"]) for p, a in zip(prompts[:5], answers[:5])]
                log(f"eval {rows[-1]}")
            if teacher is None:
                continue
            answers = [{"text": text, "eos": finished} for text, finished in
                       teacher_answers(teacher, tokenizer, prompts, gen_length, batch_size, sample=False, seed=0)]
            rows.append({"set": name, "gen_length": gen_length, "decoder": "ar_teacher",
                         **summarise(examples, answers)})
            samples[f"{name}/{gen_length}/ar_teacher"] = [(p, a["text"]) for p, a in zip(prompts[:5], answers[:5])]
            log(f"eval {rows[-1]}")
    return rows, samples


def table_markdown(rows: list[dict]) -> str:
    lines = ["| set | gen | decoder | accuracy | mean NFE | EOS share | degenerate share |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda value, spec: "-" if value is None else format(value, spec)  # noqa: E731
    for r in rows:
        lines.append(f"| {r['set']} | {r['gen_length']} | {r['decoder']} | {fmt(r['accuracy'], '.1%')} | "
                     f"{fmt(r['mean_nfe'], '.1f')} | {fmt(r['eos_share'], '.0%')} | "
                     f"{fmt(r['degenerate_share'], '.0%')} |")
    return "\n".join(lines)
