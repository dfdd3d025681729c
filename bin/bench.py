#!/usr/bin/env python
"""e2h's speed against references measured in the same run, as one table.

1. Training: tokens/s and peak memory of GeneratorModule's step under the Lightning Trainer against a raw
   PyTorch loop (same model, same batches, same AdamW) — the goal is a ratio raw/Lightning <= 1.10.
2. Sampling: new tokens/s of e2h's sampling path (`generate_completions`) against plain `model.generate`
   on the same prompts, and of the static-cache backend (`e2h.generation.static_cache.static_generate`, its decode step
   compiled with CUDA graphs when --compile, the default on CUDA), next to the memory-bandwidth limit of
   decoding at --hbm-gbps.
3. PPO: one rollout's wall time split into generation, scoring and optimisation (--ppo-backend).
4. Peak memory; MFU of training with --peak-tflops.

    python bin/bench.py                       # tiny sizes, CPU
    python bin/bench.py --device cuda --hidden 2048 --layers 16 --seq 2048 --batch 8 --dtype bf16 \
        --peak-tflops 989 --gen-batch 64 --new-tokens 256 --ppo-backend static   # ~1B Llama shape, H200
"""

from __future__ import annotations

import argparse
import copy
import resource
import time

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from e2h.data.prompts import PromptFormat
from e2h.generation.sampling import SamplingConfig, generate_completions
from e2h.generation.static_cache import static_generate
from e2h.modules import GeneratorModule
from e2h.text.encoding import IGNORE_LABEL
from e2h.text.tokenizer import build_char_tokenizer


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def make_module(args) -> GeneratorModule:
    torch.manual_seed(0)
    config = {
        "model_type": "llama",
        "hidden_size": args.hidden,
        "intermediate_size": args.intermediate or args.hidden * 2,
        "num_hidden_layers": args.layers,
        "num_attention_heads": max(args.hidden // 128, 1) if args.hidden >= 1024 else max(args.hidden // 64, 1),
        "max_position_embeddings": max(args.seq, 512),
    }
    module = GeneratorModule(tokenizer="char", model_config=config, dtype=args.dtype)
    module.configure_model()
    return module


def batches(args, vocab: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(args.steps):
        ids = torch.randint(4, vocab, (args.batch, args.seq), generator=g)
        out.append({
            "input_ids": ids,
            "targets": torch.cat([ids[:, 1:], torch.full((args.batch, 1), IGNORE_LABEL)], dim=1),
            "attention_mask": torch.ones_like(ids),
            "position_ids": torch.arange(args.seq).expand(args.batch, -1),
        })
    return out


def make_optimizer(params, args) -> torch.optim.Optimizer:
    # The same optimizer on both sides; fused AdamW where CUDA offers it.
    return torch.optim.AdamW(params, lr=1e-4, fused=args.device.startswith("cuda"))


def train_flops_per_token(module: GeneratorModule, seq: int) -> float:
    """6 x parameters (forward + backward) plus causal attention scores: 6 x layers x seq x hidden."""
    config = module.model.config
    params = sum(p.numel() for p in module.model.parameters())
    return 6 * params + 6 * config.num_hidden_layers * seq * config.hidden_size


def raw_loop(args, data) -> float:
    module = make_module(args)
    model = module.model.to(args.device)
    opt = make_optimizer(model.parameters(), args)
    times = []
    for batch in data:
        batch = {k: v.to(args.device) for k, v in batch.items()}
        start = time.perf_counter()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=IGNORE_LABEL)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sum(times[args.warmup :]) / len(times[args.warmup :])


class StepTimer(Callback):
    def __init__(self):
        self.times, self._start = [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


def lightning_loop(args, data) -> float:
    module = make_module(args)
    module.optimizer_factory = lambda params: make_optimizer(params, args)
    timer = StepTimer()
    trainer = Trainer(
        accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1, max_steps=len(data),
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer],
    )
    loader = DataLoader(data, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return sum(timer.times[args.warmup :]) / len(timer.times[args.warmup :])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decode_limit(model, batch: int, context: float, hbm_gbps: float) -> tuple[float, float, float]:
    """Memory-bandwidth limit of decoding: each step reads every weight once and the KV cache of every row,
    so new tok/s <= batch x bandwidth / (parameter bytes + KV-cache bytes read per step), with KV-cache bytes
    = batch x layers x 2 (K and V) x KV heads x head dim x context x element size (context: the prompt plus,
    on average, half the new tokens). Returns the limit and the two byte counts."""
    config = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    element = next(model.parameters()).element_size()
    kv = batch * config.num_hidden_layers * 2 * kv_heads * head_dim * context * element
    return batch * hbm_gbps * 1e9 / (weights + kv), weights, kv


def sampling(args) -> tuple[float, float, float, tuple[float, float, float]]:
    module = make_module(args)
    model, tokenizer = module.model.to(args.device).eval(), module.tokenizer
    prompts = [PromptFormat().prompt(f"{i}+{i}-3+{i % 7}") for i in range(args.gen_batch)]
    cfg = SamplingConfig(max_new_tokens=args.new_tokens, temperature=1.0)
    # plain transformers generate on the same left-padded batch; a token budget fixed by min_new_tokens
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(args.device)
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=True,
                  pad_token_id=tokenizer.pad_token_id)
    model.generate(**enc, **kwargs)  # warm-up
    start = time.perf_counter()
    out = model.generate(**enc, **kwargs)
    plain = (out.shape[1] - enc["input_ids"].shape[1]) * len(prompts) / (time.perf_counter() - start)
    # The same budget for e2h's path: every row generates exactly new_tokens tokens (a random model's
    # EOS is suppressed), so both sides do identical work and tokens/s compare directly.
    model.generation_config.min_new_tokens = args.new_tokens
    generate_completions(model, tokenizer, prompts, cfg)
    start = time.perf_counter()
    generate_completions(model, tokenizer, prompts, cfg)
    ours = args.new_tokens * len(prompts) / (time.perf_counter() - start)
    # The static backend on the same batch and budget: no EOS, so every row generates exactly new_tokens
    # tokens; generate's default sampling (temperature 1, top-k 50). Warm: timed after one call (which
    # compiles the decode step with --compile).
    def run_static():
        return static_generate(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=args.new_tokens,
                               do_sample=True, top_k=50, pad_token_id=tokenizer.pad_token_id, compile=args.compile)
    run_static()
    sync(args.device)
    start = time.perf_counter()
    out = run_static()
    sync(args.device)
    static = (out.shape[1] - enc["input_ids"].shape[1]) * len(prompts) / (time.perf_counter() - start)
    context = enc["input_ids"].shape[1] + args.new_tokens / 2
    return plain, ours, static, decode_limit(model, len(prompts), context, args.hbm_gbps)


def ppo_split(args) -> dict[str, float]:
    """Seconds of one PPO rollout in generation, scoring and optimisation (PPOModule under the Trainer, the
    model above as policy and reference, a reward model of the same shape, synthetic prompts), measured on
    the second rollout (the first pays warm-up and compilation)."""
    import tempfile

    from transformers import AutoModelForTokenClassification

    from e2h.datamodules import ProblemSource
    from e2h.datamodules.ppo import PPOPromptsDataModule
    from e2h.modules import PPOModule
    from e2h.modules.ppo_args import BatchSizes, Sampling

    module = make_module(args)
    rm_config = copy.deepcopy(module.model.config)
    rm_config.num_labels = 1
    with tempfile.TemporaryDirectory() as tmp:
        policy, rm = f"{tmp}/policy", f"{tmp}/rm"
        for folder, model in ((policy, module.model),
                              (rm, AutoModelForTokenClassification.from_config(rm_config))):
            model.save_pretrained(folder)
            module.tokenizer.save_pretrained(folder)
        ppo = PPOModule(
            policy=policy, reward_model=rm, dtype=args.dtype, log_rollouts=0,
            batch=BatchSizes(rollout=args.gen_batch, minibatch=max(args.gen_batch // 4, 1)),
            sampling=Sampling(max_new_tokens=args.new_tokens, backend=args.ppo_backend),
        )
        levels, sizes = [1, 2, 3, 4, 5], {"train": 200, "test": 4}
        data = PPOPromptsDataModule(train=ProblemSource(levels=levels, synthetic_per_level=sizes),
                                    val=ProblemSource(split="test", levels=levels, synthetic_per_level=sizes))
        steps = 2 * ppo.steps_per_rollout
        trainer = Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1, max_steps=steps,
                          logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, limit_val_batches=0)
        trainer.fit(ppo, datamodule=data)
    metrics = trainer.callback_metrics
    return {name: float(metrics[f"time/{name}_s"]) for name in ("generation", "scoring", "optimisation")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=None, help="MLP width (default 2 x hidden)")
    p.add_argument("--peak-tflops", type=float, default=None, help="hardware bf16 peak for MFU (H200: 989)")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--gen-batch", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the static backend's decode step (default: on CUDA only)")
    p.add_argument("--ppo-backend", default="generate", choices=["generate", "static"], help="PPO rollout generation")
    p.add_argument("--no-ppo", action="store_true", help="skip the PPO step split")
    p.add_argument("--hbm-gbps", type=float, default=4800, help="memory bandwidth for the decoding limit (H200: 4800)")
    args = p.parse_args()
    if args.compile is None:
        args.compile = args.device.startswith("cuda")
    torch.manual_seed(0)
    data = batches(args, len(build_char_tokenizer()))
    tokens = args.batch * args.seq
    raw = raw_loop(args, data)
    light = lightning_loop(args, data)
    memory = peak_memory_mb(args.device)
    plain, ours, static, (limit, weights, kv) = sampling(args)
    print(f"device {args.device}, model {args.layers} layers x {args.hidden}, batch {args.batch} x {args.seq} tokens")
    print("| what | e2h | reference | ratio (ref time / e2h time) |")
    print("|---|---|---|---|")
    print(f"| training tokens/s | {tokens / light:,.0f} (Lightning) | {tokens / raw:,.0f} (raw PyTorch loop) | {raw / light:.3f} (e2h step takes {light / raw:.3f}x) |")
    print(f"| sampling new tokens/s, batch {args.gen_batch} | {ours:,.0f} | {plain:,.0f} (model.generate) | {ours / plain:.3f} |")
    print(f"| sampling new tokens/s, batch {args.gen_batch}, static backend ({'compiled' if args.compile else 'eager'}) "
          f"| {static:,.0f} | {plain:,.0f} (model.generate) | {static / plain:.3f} |")
    print(f"| decoding limit new tokens/s at {args.hbm_gbps:,.0f} GB/s (weights {weights / 2**20:,.1f} MiB + KV cache "
          f"{kv / 2**20:,.1f} MiB per step) | {limit:,.0f} | | static backend at {static / limit:.4f} of it |")
    if args.peak_tflops:
        flops = train_flops_per_token(make_module(args), args.seq)
        print(f"| MFU (peak {args.peak_tflops:.0f} TFLOP/s) | {flops * tokens / light / args.peak_tflops / 1e12:.3f} "
              f"| {flops * tokens / raw / args.peak_tflops / 1e12:.3f} | |")
    if not args.no_ppo:
        split = ppo_split(args)
        total = sum(split.values())
        parts = ", ".join(f"{name} {seconds:.2f} s ({seconds / total:.0%})" for name, seconds in split.items())
        print(f"| PPO rollout of {args.gen_batch} x {args.new_tokens} new tokens ({args.ppo_backend}) | {total:.2f} s: {parts} | | |")
    print(f"| peak memory (MiB, {'CUDA allocated' if args.device.startswith('cuda') else 'process RSS'}) | {memory:,.0f} | | |")


if __name__ == "__main__":
    main()
