"""An earlier revision of mxarchiverd to measure beside this tree, in the same run.

`git archive REV` of the package and its migrations goes into a temp directory,
and the baseline daemon runs with that directory first on PYTHONPATH, in the same
venv (same Python, same libraries), so the only difference is the code. The
migrations are linked in as the installed package holds them
(mxarchiverd/migrations), since the source tree keeps them at the top level.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchlib import procs

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Revision:
    label: str                  # what the tables call it
    pythonpath: str | None      # None: this tree, as installed in the venv

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": self.pythonpath} if self.pythonpath else {}


THIS_TREE = Revision("this tree", None)


def checkout(stack: procs.Cleanup, rev: str) -> Revision:
    """The code of `rev` (any git revision) in a temp directory, removed at clean-up."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix=f"mxa-bench-baseline-{commit}-"))
    stack.callback(lambda: subprocess.run(["rm", "-rf", str(root)], check=False), label="remove baseline tree")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "mxarchiverd", "migrations"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    (root / "mxarchiverd" / "migrations").symlink_to(root / "migrations", target_is_directory=True)
    return Revision(f"baseline {rev} ({commit})" if rev != commit else f"baseline {commit}", str(root))
