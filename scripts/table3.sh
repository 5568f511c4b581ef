#!/usr/bin/env bash
# Table 3 of the CGN paper through the harness: the MNIST CNN trained in five settings
# (Original, GAN, CGN, O+GAN, O+CGN) and scored on each variant's OOD test split.
#
#   scripts/table3.sh DATA_DIR [c-mnist dc-mnist w-mnist] [-- extra cgnbench run options]
#
# CGN weights: $CGN_WEIGHTS_DIR/cgn_<variant>_MNIST.pth when set (the authors' release, e.g.
# ../shared/data/cgn_mnist_weights), otherwise the zoo (`auto`). GAN rows need DCGAN weights:
# $DCGAN_WEIGHTS_DIR/dcgan.<benchmark>.pth, otherwise the zoo; rows whose weights are missing
# fail with a one-line error and the script goes on. Every row is an ordinary, resumable run:
# rerunning the script skips finished rows. Show the table with
#   cgnbench leaderboard -b c-mnist   (and dc-mnist, w-mnist)
set -u
data_dir=${1:?usage: scripts/table3.sh DATA_DIR [BENCHMARK...] [-- RUN_OPTIONS...]}
shift
benchmarks=()
while [[ $# -gt 0 && $1 != "--" ]]; do benchmarks+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
extra=("$@")
[[ ${#benchmarks[@]} -eq 0 ]] && benchmarks=(c-mnist dc-mnist w-mnist)
declare -A variant=([c-mnist]=colored [dc-mnist]=double_colored [w-mnist]=wildlife)
status=0
for b in "${benchmarks[@]}"; do
  cgn=auto; gan=auto
  [[ -n ${CGN_WEIGHTS_DIR:-} ]] && cgn="$CGN_WEIGHTS_DIR/cgn_${variant[$b]}_MNIST.pth"
  [[ -n ${DCGAN_WEIGHTS_DIR:-} ]] && gan="$DCGAN_WEIGHTS_DIR/dcgan.$b.pth"
  for row in "original generated" "cgn generated" "cgn original+generated" \
             "dcgan generated" "dcgan original+generated"; do
    read -r gen mix <<<"$row"
    opts=()
    [[ $gen == cgn ]] && opts=(--set "generator.weights=$cgn")
    [[ $gen == dcgan ]] && opts=(--set "generator.weights=$gan")
    echo "== $b: $gen ($mix)"
    cgnbench run -g "$gen" -b "$b" --mix "$mix" --data-dir "$data_dir" "${opts[@]}" \
      "${extra[@]}" || status=1
  done
done
exit $status
