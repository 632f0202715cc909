# Sourced by run.sh and every steps/ script: the recipe's environment.
SSLSV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SSLSV_ROOT
venv=${SSLSV_VENV:-$SSLSV_ROOT/venv}
if [ -f "$venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$venv/bin/activate"
fi
export PATH=$SSLSV_ROOT/utils:$SSLSV_ROOT/steps:$SSLSV_ROOT/pyscripts:$PATH
export PYTHONPATH=$SSLSV_ROOT/pyscripts${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export LC_ALL=C
