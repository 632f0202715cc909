"""Options of the UBM steps (``diag_ubm`` and ``full_ubm`` sections of ``conf/ivector.yaml``) and two light
commands the step scripts call before any torch work (no torch import here):

  python3 -m sslsv.ivector.ubm_options config-value --config C <section> <key> [key=value ...]
  python3 -m sslsv.ivector.ubm_options frame-opts --config C <out-frame_opts>
"""

from __future__ import annotations

import argparse
import sys

from ..config import section
from ..tables import DataError
from .frames import FrameOptions

DIAG_DEFAULTS = {
    "num_gauss": 256, "initial_gauss_proportion": 0.5, "num_iters_init": 20, "num_frames": 500000,
    "num_iters": 4, "num_gselect": 30, "subsample": 1, "min_gaussian_weight": 1e-4,
    "remove_low_count_gaussians": True,
}
FULL_DEFAULTS = {
    "num_iters": 4, "num_gselect": 20, "subsample": 1, "min_gaussian_weight": 1e-4,
    "remove_low_count_gaussians": False,
}
DEFAULTS = {"diag_ubm": DIAG_DEFAULTS, "full_ubm": FULL_DEFAULTS}


def ubm_options(config: str | None, name: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Section ``diag_ubm`` or ``full_ubm`` of ``config`` with ``key=value`` overrides."""
    return section(config, name, DEFAULTS[name], overrides)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m sslsv.ivector.ubm_options", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("config-value")
    p.add_argument("--config", default=None)
    p.add_argument("section", choices=list(DEFAULTS))
    p.add_argument("key")
    p.add_argument("overrides", nargs="*")
    p = sub.add_parser("frame-opts")
    p.add_argument("--config", default=None)
    p.add_argument("out")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "config-value":
            v = ubm_options(a.config, a.section, a.overrides)[a.key]
            print(str(v).lower() if isinstance(v, bool) else v)
        else:
            FrameOptions.from_config(a.config).save(a.out)
    except (DataError, KeyError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
