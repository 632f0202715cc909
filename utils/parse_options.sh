# utils/parse_options.sh: command-line options for recipe scripts, with Kaldi's semantics.
# Source it after a script's defaults block:
#
#     nj=4
#     use_gpu=false
#     help_message="Usage: $0 [options] <data>"
#     . utils/parse_options.sh
#
# * "--foo-bar value" (or "--foo-bar=value") sets the shell variable foo_bar, which must already be
#   defined: an unknown option is an error that names it. "--foo_bar" works too. Only lower-case,
#   unexported, non-array variables are options (so --PATH, --home or --help-message are errors); a
#   script's own bookkeeping variables set before its defaults block start with "_".
# * A variable whose default is true or false only accepts true or false.
# * "--config FILE" sources FILE (bash "name=value" lines) before the remaining options are read, as in
#   Kaldi, unless the script defines its own variable named config: then --config is an ordinary option.
# * "--help" or "-h" prints $help_message and exits 0. Options end at the first argument that does not
#   start with "--", or after "--"; the positional arguments are left in "$@".

__po_script=$(basename "$0")
__po_has_config=false
[ -n "${config+x}" ] && __po_has_config=true

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%s\n' "$help_message" >&2
      else echo "$__po_script: no help message for this script" >&2; fi
      exit 0 ;;
    --) shift; break ;;
    --*)
      __po_opt=${1#--}
      if [[ "$__po_opt" == *=* ]]; then
        __po_val=${__po_opt#*=}; __po_opt=${__po_opt%%=*}; shift
      else
        if [ $# -lt 2 ]; then
          echo "$__po_script: option --$__po_opt needs a value" >&2; exit 1
        fi
        __po_val=$2; shift 2
      fi
      __po_name=${__po_opt//-/_}
      if [ "$__po_name" = config ] && [ "$__po_has_config" = false ]; then
        if [ ! -f "$__po_val" ]; then
          echo "$__po_script: --config: no such file $__po_val" >&2; exit 1
        fi
        # shellcheck disable=SC1090
        . "$__po_val" || { echo "$__po_script: error sourcing config file $__po_val" >&2; exit 1; }
        continue
      fi
      # an option is a lower-case, unexported, scalar variable of the script: its defaults block, not the
      # environment (--PATH, --home, --http-proxy) nor the script's own bookkeeping (help_message)
      if ! [[ "$__po_name" =~ ^[a-z][a-z0-9_]*$ ]] || [ -z "${!__po_name+x}" ] ||
         [ "$__po_name" = help_message ] || [[ "$(declare -p "$__po_name" 2>/dev/null)" != "declare -- "* ]]; then
        echo "$__po_script: invalid option --$__po_opt (see $__po_script --help)" >&2; exit 1
      fi
      __po_old=${!__po_name}
      if { [ "$__po_old" = true ] || [ "$__po_old" = false ]; } &&
         [ "$__po_val" != true ] && [ "$__po_val" != false ]; then
        echo "$__po_script: option --$__po_opt expects true or false, got '$__po_val'" >&2; exit 1
      fi
      if [ "$__po_name" = cmd ] && [ -z "$__po_val" ]; then
        echo "$__po_script: empty argument to --cmd option" >&2; exit 1
      fi
      printf -v "$__po_name" '%s' "$__po_val" ;;
    *) break ;;
  esac
done
unset __po_opt __po_val __po_name __po_old __po_has_config __po_script
true
