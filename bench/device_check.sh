#!/bin/bash
# The GPU-node check behind the "device check" sections of bench/RESULTS.md (issues 5, 6).
# Prepared here, run there from the repository root with .whl/ (wheels of trl 1.16.0,
# datasets 5.2.0, multiprocess, dill: the node has PyTorch/transformers/peft but no network)
# and .gpu/ (SmolLM2 tokenizer files, ml-100k.inter/.item, rows.json from
# `python -m bench.training --ds D --export .gpu/rows.json --rows 64`) carried along.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch,transformers,trl,peft,accelerate,datasets,pyarrow;print('torch',torch.__version__,'transformers',transformers.__version__,'trl',trl.__version__,'peft',peft.__version__,'accelerate',accelerate.__version__,'datasets',datasets.__version__,'pyarrow',pyarrow.__version__)"
python3 -c "import vllm" 2>&1 | tail -1
R=$OUT/RESULTS_gpu.md
python3 -m bench.random_model --tokenizer .gpu/tok --shape smollm2-1.7b --out /tmp/m17 2>&1 | grep -v Writing
python3 -m bench.random_model --tokenizer .gpu/tok --shape smollm2-135m --out /tmp/m135 2>&1 | grep -v Writing
echo "== generation 1.7B $(date +%T)"
timeout 150 python3 -m bench.generation --engines transformers --model /tmp/m17 --movielens-dir .gpu/ml-100k --prompts 256 --new-tokens 64 --batch-sizes 64,256 --hf-dtypes bfloat16 --matmul-dtypes bfloat16 --timeout 100 --workdir /tmp/gen17 --record $R 2>&1 | grep -v "Warning\|warn" | tail -12
echo "== training 1.7B $(date +%T)"
timeout 150 python3 -m bench.training --examples .gpu/rows.json --model /tmp/m17 --model-name smollm2-1.7b-shape --bf16 --sft-steps 6 --grpo-steps 4 --record $R 2>&1 | grep "^{\"\|^|\|Error\|error" | tail -12
echo "== training 135M $(date +%T)"
timeout 90 python3 -m bench.training --examples .gpu/rows.json --model /tmp/m135 --model-name smollm2-135m-shape --bf16 --sft-steps 6 --grpo-steps 4 --record $R 2>&1 | grep "^{\"\|^|\|Error\|error" | tail -12
echo "== generation 135M $(date +%T)"
timeout 90 python3 -m bench.generation --engines transformers --model /tmp/m135 --movielens-dir .gpu/ml-100k --prompts 256 --new-tokens 64 --batch-sizes 256 --hf-dtypes bfloat16 --matmul-dtypes bfloat16 --timeout 60 --workdir /tmp/gen135 --record $R 2>&1 | grep -v "Warning\|warn" | tail -8
cp /tmp/gen17/results.json $OUT/gen17.json 2>/dev/null
echo "== done $(date +%T)"
