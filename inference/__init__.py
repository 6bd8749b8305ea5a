"""Nightly batch scoring with vLLM and evaluation (issue: batch inference)."""
