#!/usr/bin/env bash
# Distributed training through torchrun, on one machine or several.
#
#   tools/dist_train.sh CONFIG NPROC [--nnodes N] [--node-rank R] [--master-addr HOST]
#                       [--master-port PORT] [train.py args...]
#
# NPROC processes per machine (one per GPU; on a CPU-only machine they talk over
# gloo, with GPUs over NCCL). Several machines: run the same command on each,
# with the same --nnodes, --master-addr (an address of the node-rank-0 machine
# that the others can reach) and --master-port, and --node-rank 0..N-1:
#
#   node 0:  tools/dist_train.sh CFG 8 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1
#   node 1:  tools/dist_train.sh CFG 8 --nnodes 2 --node-rank 1 --master-addr 10.0.0.1
#
# The environment variables NNODES, NODE_RANK, MASTER_ADDR, PORT give the same
# settings (flags win); PYTHON picks the interpreter. Every other argument goes
# to tools/train.py (e.g. --amp --sync-bn --auto-scale-lr --work-dir DIR).
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 CONFIG NPROC [--nnodes N] [--node-rank R] [--master-addr HOST]" \
         "[--master-port PORT] [train.py args...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
TRAIN_ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nnodes) NNODES=$2; shift 2 ;;
        --node-rank|--node_rank) NODE_RANK=$2; shift 2 ;;
        --master-addr|--master_addr) MASTER_ADDR=$2; shift 2 ;;
        --master-port|--master_port) PORT=$2; shift 2 ;;
        *) TRAIN_ARGS+=("$1"); shift ;;
    esac
done
DIR="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}
