# shellcheck shell=bash
# utils/step_lib.sh: the idioms every steps/ script shares, as shell functions. Source it right after
# utils/parse_options.sh:
#
#     . "$SSLSV_ROOT/utils/parse_options.sh"
#     . "$SSLSV_ROOT/utils/step_lib.sh"
#
# The calling convention stays Kaldi's (options, positional input dirs, the output dir; jobs through
# "$cmd" with a log per job). Messages start with "$0: " (the step's name) and go to stderr; the
# functions that stop the step exit 1. As in a log argument of "$cmd", JOB in a file name stands for
# every job number.

# usage: print $help_message and exit 1 (wrong number of positional arguments).
#   [ $# -eq 2 ] || usage
usage() {
  # shellcheck disable=SC2154  # help_message: the step's, before utils/parse_options.sh
  printf '%s\n' "$help_message" >&2
  exit 1
}

# die MESSAGE...: print "$0: MESSAGE" and exit 1.
die() {
  echo "$0: $*" >&2
  exit 1
}

# require_files FILE...: exit 1 with "$0: no such file FILE" for the first FILE that is not a file.
require_files() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || die "no such file $f"
  done
}

# positive_int OPTION VALUE: exit 1 unless VALUE is a positive integer (no leading zero).
#   positive_int --nj "$nj"
positive_int() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

# non_negative_int OPTION VALUE: exit 1 unless VALUE is 0 or a positive integer.
non_negative_int() {
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer, got '$2'"
}

# up_to_date STAMP OUTPUT... -- INPUT... [--archives-of SCP...] [--opts S]
# True, after printing "$0: OUTPUT is up to date (inputs and options unchanged, STAMP); skipping" (the
# first OUTPUT), when every OUTPUT is a file and `stamp.py check STAMP INPUT... --opts S` succeeds: the
# step was finished with these inputs and options. Otherwise removes STAMP (so that a run stopped
# part-way is never taken for the finished one) and returns 1. Write the stamp at the end of the step
# with the same arguments: stamp.py write STAMP INPUT... [--archives-of SCP...] [--opts S].
#   if up_to_date "$stamp" "$dir/final.ie" -- "${inputs[@]}" --opts "$opts"; then exit 0; fi
up_to_date() {
  local stamp=$1 f done=true
  local -a outputs=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do outputs+=("$1"); shift; done
  if [ $# -eq 0 ] || [ ${#outputs[@]} -eq 0 ]; then die "up_to_date: usage: up_to_date STAMP OUTPUT... -- INPUT..."; fi
  shift
  for f in "${outputs[@]}"; do [ -f "$f" ] || done=false; done
  if $done && stamp.py check "$stamp" "$@"; then
    echo "$0: ${outputs[0]} is up to date (inputs and options unchanged, $stamp); skipping"
    return 0
  fi
  rm -f "$stamp"
  return 1
}

# restart_if_changed DIR STALE... -- INPUT... [--archives-of SCP...] [--opts S]
# For the steps that resume after their last finished iteration: DIR/.inputs holds the fingerprint of
# the inputs and options of the run whose iteration files are in DIR. When the current one differs,
# STALE... (files or folders of that run) are removed and the new fingerprint is recorded, so the step
# starts again from scratch.
restart_if_changed() {
  local dir=$1 fp
  local -a stale=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do stale+=("$1"); shift; done
  [ $# -gt 0 ] || die "restart_if_changed: usage: restart_if_changed DIR STALE... -- INPUT..."
  shift
  fp=$(stamp.py fingerprint "$@")
  if [ "$(cat "$dir/.inputs" 2>/dev/null)" != "$fp" ]; then
    rm -rf "${stale[@]}"
    echo "$fp" > "$dir/.inputs"
  fi
}

# failed MESSAGE LOG [REMARK]: after a job failed, print the error lines of its log (those matching
# "error" in any case, but not the launcher's "# ..." header and footer lines; the last 5), then
# "$0: MESSAGE; see LOG[ REMARK]", and exit 1. JOB in LOG stands for the logs of all jobs and is shown
# as *, so LOG is the log argument given to "$cmd":
#   $cmd JOB=1:"$nj" "$dir/log/extract.JOB.log" extract.py ... || failed "extraction failed" "$dir/log/extract.JOB.log"
failed() {
  local msg=$1 log=$2 remark=${3:-}
  local -a logs=("$log")
  [[ "$log" == *JOB* ]] && logs=("${log%%JOB*}"*"${log#*JOB}")
  { grep -hi "error" "${logs[@]}" 2>/dev/null | grep -v "^# " | tail -5 >&2; } || true
  echo "$0: $msg; see ${log//JOB/*}${remark:+ $remark}" >&2
  exit 1
}

# merge_jobs NJ PATTERN: the tables PATTERN of jobs JOB=1..NJ, concatenated and sorted in C order (as
# Kaldi requires), on stdout.
#   merge_jobs "$nj" "$dir/ivector.JOB.scp" > "$tmp"
merge_jobs() {
  local n
  for n in $(seq "$1"); do cat "${2//JOB/$n}" || exit 1; done | LC_ALL=C sort
}

# copy_atomic SRC DST: copy SRC to DST through a temporary beside DST (.NAME.tmp), so DST is whole or absent.
copy_atomic() {
  local tmp
  tmp=$(dirname "$2")/.$(basename "$2").tmp
  cp "$1" "$tmp" && mv "$tmp" "$2"
}
