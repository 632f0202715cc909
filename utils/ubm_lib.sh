# shellcheck shell=bash
# utils/ubm_lib.sh: the EM iterations that steps/train_diag_ubm.sh and steps/train_full_ubm.sh share.
# Source it after utils/step_lib.sh. Jobs run through the step's "$cmd".

# ubm_em diag|full NJ DATA DIR NUM_ITERS OPTION...
# EM iterations of the UBM in DIR, from the last one finished: DIR/<it>.<ext> for it = 1..NUM_ITERS (ext
# dubm for diag, ubm for full; DIR/0.<ext> must exist), then DIR/final.<ext>. With NJ 1 all iterations
# run in one process (ubm.py train-KIND, log DIR/log/train.<start>.log); otherwise, per iteration, the
# statistics of NJ data parts through "$cmd JOB=1:NJ" (ubm.py acc-KIND, logs DIR/log/acc.<it>.JOB.log;
# posteriors over the Gaussians selected with DIR/0.<ext>), summed by the M-step (ubm.py est-KIND, log
# DIR/log/update.<it>.log; --last on the last iteration). The OPTIONs (--config, --set, --frame-opts,
# --device, --dtype, each followed by its value) go to train-KIND and acc-KIND, the --config and --set
# ones to est-KIND. Prints the average log-likelihood of each iteration.
ubm_em() {
  local kind=$1 nj=$2 data=$3 dir=$4 num_iters=$5
  shift 5
  local -a args=("$@") est=() last accs
  local ext device=auto start=0 x n i
  case $kind in
    diag) ext=dubm ;;
    full) ext=ubm ;;
    *) die "ubm_em: unknown kind '$kind' (diag or full)" ;;
  esac
  for ((i = 0; i + 1 < ${#args[@]}; i += 2)); do
    case ${args[i]} in
      --config|--set) est+=("${args[i]}" "${args[i + 1]}") ;;
      --device) device=${args[i + 1]} ;;
    esac
  done

  for x in $(seq 0 "$num_iters"); do [ -f "$dir/$x.$ext" ] && start=$x; done
  [ "$start" -gt 0 ] && echo "$0: resuming after iteration $((start - 1)) ($dir/$start.$ext exists)"

  if [ "$start" -lt "$num_iters" ]; then
    if [ "$nj" -eq 1 ]; then
      echo "$0: EM iterations $start..$((num_iters - 1)) in one process on $device (log in $dir/log/train.$start.log)"
      # shellcheck disable=SC2154  # cmd: the step's job launcher
      $cmd "$dir/log/train.$start.log" ubm.py "train-$kind" "${args[@]}" "$data" "$dir" "$start" \
        || failed "training failed" "$dir/log/train.$start.log"
      grep "average log-likelihood" "$dir/log/train.$start.log" | sed "s|^[0-9:]* |$0: |"
    else
      for x in $(seq "$start" $((num_iters - 1))); do
        rm -f "$dir/$x".*.acc
        $cmd JOB=1:"$nj" "$dir/log/acc.$x.JOB.log" \
          ubm.py "acc-$kind" "${args[@]}" --part JOB/"$nj" "$data" "$dir/$x.$ext" "$dir/0.$ext" "$dir/$x.JOB.acc" \
          || failed "statistics failed in iteration $x" "$dir/log/acc.$x.JOB.log"
        last=(); [ $((x + 1)) -eq "$num_iters" ] && last=(--last)
        accs=(); for n in $(seq "$nj"); do accs+=("$dir/$x.$n.acc"); done
        $cmd "$dir/log/update.$x.log" \
          ubm.py "est-$kind" "${est[@]}" --iter "$x" "${last[@]}" "$dir/$x.$ext" "$dir/$((x + 1)).$ext" "${accs[@]}" \
          || failed "update failed in iteration $x" "$dir/log/update.$x.log"
        grep "average log-likelihood" "$dir/log/update.$x.log" | sed "s|^[0-9:]* |$0: |"
        rm -f "${accs[@]}"
      done
    fi
  fi
  copy_atomic "$dir/$num_iters.$ext" "$dir/final.$ext"
}
