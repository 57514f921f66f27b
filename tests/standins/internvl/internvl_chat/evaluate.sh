set -x
# Stand-in for InternVL's internvl_chat/evaluate.sh (caption-coco only), built as the real one
# is: the checkpoint argument is prefixed with $(pwd)/, and with no `set -e` and a last `if`, the
# script exits 0 even when torchrun fails.

CHECKPOINT=${1}
DATASET=${2}
CHECKPOINT="$(pwd)/${CHECKPOINT}"
export PYTHONPATH="$(pwd):${PYTHONPATH}"
echo "CHECKPOINT: ${CHECKPOINT}"

MASTER_PORT=${MASTER_PORT:-63669}
GPUS=${GPUS:-8}
ARGS=("$@")
echo "GPUS: ${GPUS}"

if  [ ${DATASET} == "caption-coco" ]; then
  torchrun \
    --nnodes=1 \
    --node_rank=0 \
    --master_addr=127.0.0.1 \
    --nproc_per_node=${GPUS} \
    --master_port=${MASTER_PORT} \
    eval/caption/evaluate_caption.py --checkpoint ${CHECKPOINT} --datasets coco "${ARGS[@]:2}"
fi

if  [ ${DATASET} == "caption-flickr30k" ]; then
  echo "not in the stand-in"
fi
