#!/usr/bin/env bash
# A Cloud TPU VM, one host or a pod slice (v4-32: 4 hosts): copy this checkout to every
# worker, install, then start train.py on all workers at once (--worker=all). Each host
# runs one process that drives its local TPU chips; JAX detects the pod by itself.
#
#   export TPU=my-tpu ZONE=us-central2-b [PROJECT=my-project]
#   launch/tpu_vm.sh setup      # once: copy the code, pip install (jax[tpu] + requirements)
#   launch/tpu_vm.sh train configs/resnet50.py /mnt/shared/runs/r50 [--config.KEY=VALUE ...]
#   launch/tpu_vm.sh sync       # copy the code again after a change
#
# On a pod slice, the workdir must be a filesystem every host sees (Filestore/NFS, or a
# bucket mounted with gcsfuse), and the data too (TFDS reads gs:// data_dirs directly:
# --config.data_dir=gs://bucket/tensorflow_datasets). train runs in the foreground over
# ssh; DETACH=1 starts it with nohup instead (output in ~/cnn-history/train.log on each
# worker), so a dropped connection does not stop it. Running train again resumes.
set -euo pipefail
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE to its zone}"
remote_dir=${REMOTE_DIR:-cnn-history}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gcloud_flags=(--zone "$ZONE" ${PROJECT:+--project "$PROJECT"})

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU" "${gcloud_flags[@]}" --worker=all --command "$1"
}

sync_code() {
  # The working tree's tracked and untracked (not ignored) files: no runs or checkpoints.
  local archive=/tmp/cnn-history-$$.tar.gz
  (cd "$root" && git ls-files -z --cached --others --exclude-standard \
      | tar -czf "$archive" --null -T -)
  gcloud compute tpus tpu-vm scp "$archive" "$TPU:/tmp/cnn-history.tar.gz" \
      "${gcloud_flags[@]}" --worker=all
  rm -f "$archive"
  on_all_workers "mkdir -p ~/$remote_dir && tar -xzf /tmp/cnn-history.tar.gz -C ~/$remote_dir"
}

case "${1:-}" in
  setup)
    sync_code
    on_all_workers "cd ~/$remote_dir && python3 -m pip install -q -r requirements.txt \
        && python3 -m pip install -q -U 'jax[tpu]'"
    ;;
  sync)
    sync_code
    ;;
  train)
    if [[ $# -lt 3 ]]; then
      echo "usage: launch/tpu_vm.sh train CONFIG[:ARG] WORKDIR [--config.KEY=VALUE ...]" >&2
      exit 2
    fi
    shift
    cmd="cd ~/$remote_dir && python3 train.py --config"
    for arg in "$1" --workdir "${@:2}"; do cmd+=" $(printf '%q' "$arg")"; done
    if [[ -n "${DETACH:-}" ]]; then
      cmd="nohup bash -c $(printf '%q' "$cmd") < /dev/null > ~/$remote_dir/train.log 2>&1 &"
    fi
    on_all_workers "$cmd"
    ;;
  *)
    echo "usage: TPU=NAME ZONE=ZONE launch/tpu_vm.sh setup|sync|train CONFIG WORKDIR [...]" >&2
    exit 2
    ;;
esac
