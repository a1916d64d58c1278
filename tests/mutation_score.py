"""Prints the score of the last `mutmut run` and the mutants that survived; exits non-zero
below the floor (95 % killed). Used by `make mutation`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FLOOR = 0.95


def main() -> int:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    subprocess.run([mutmut, "export-cicd-stats"], check=True, capture_output=True)
    stats = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())
    killed, total = stats["killed"], stats["total"]
    survivors = subprocess.run([mutmut, "results"], check=True, capture_output=True, text=True).stdout
    print(survivors.rstrip() or "no survivors")
    score = killed / total if total else 0.0
    print(f"mutation score: {killed} of {total} mutants killed ({score:.1%}); "
          f"survived {stats['survived']}, timed out {stats['timeout']}, no tests {stats['no_tests']}")
    return 0 if total and score >= FLOOR else 1


if __name__ == "__main__":
    sys.exit(main())
