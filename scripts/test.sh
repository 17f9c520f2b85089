#!/usr/bin/env bash
# Run the test suite (installs what it needs first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
"$PY" -m ruff check .
# Two test processes of one thread each: most tests are single-threaded, so the two cores of a
# small machine are both busy (117 s of pytest on a 2-core AMD EPYC machine, 2026-12-07).
# Without pytest-xdist (a GPU machine's bare Python) the suite runs in one process.
parallel=()
if "$PY" -c "import xdist" 2>/dev/null; then parallel=(-n "${SEAM_TEST_WORKERS:-2}" --dist worksteal); fi
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$PY" -m pytest -q -p no:benchmark "${parallel[@]}" "$@" tests
