"""Two-stage fine-tuning (SFT, then GRPO) on interaction-of-thought traces (issue: trainer)."""
