"""One way to report progress (sslsv.logs): the line formats the steps grep for, levels, and no
hand-made print-based log helper left in the library or the entry points."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from sslsv.logs import setup

ROOT = Path(__file__).resolve().parents[1]


def test_setup_formats() -> None:
    buf = io.StringIO()
    mine = setup("cluster.py", stream=buf)
    mine.info("wrote x/labels")
    logging.getLogger("sslsv.cluster.classical").warning("gmm: EM did not converge in %d iterations", 7)
    logging.getLogger("sslsv.anything").debug("not shown")
    assert buf.getvalue().splitlines() == ["cluster.py: wrote x/labels",
                                          "cluster.py: WARNING: gmm: EM did not converge in 7 iterations"]
    buf = io.StringIO()
    setup(timestamps=True, stream=buf)
    logging.getLogger("ubm.py").info("iteration 3: average log-likelihood per frame -41.5")
    line = buf.getvalue()
    assert re.fullmatch(r"\d\d:\d\d:\d\d iteration 3: average log-likelihood per frame -41.5\n", line)
    logging.getLogger().handlers.clear()


def test_no_print_based_log_helpers() -> None:
    helper = re.compile(r"^\s*def _?log\(\s*(self,\s*)?msg")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "pyscripts").rglob("*.py")
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if helper.match(line)]
    assert not found, f"log through logging.getLogger(__name__) and sslsv.logs.setup: {found}"
