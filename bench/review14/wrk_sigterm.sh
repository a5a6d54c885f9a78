#!/bin/sh
# wrk (keep-alive, 64 connections, 10 s) across a SIGTERM to a gunicorn master, 3 s in.
#   sh bench/review14/wrk_sigterm.sh [CODE_DIR] [WORKER]
# CODE_DIR: the spotgrace checkout gunicorn imports (default: this worktree).
# wrk counts a connection closed after Connection: close as nothing; "Socket errors"
# read/write are requests lost on a connection, "Non-2xx" the 503s.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
CODE=${1:-$(cd "$HERE/../.." && pwd)}
WORKER=${2:-UvicornWorker}
PORT=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
SPOTGRACE_DRAIN_DELAY=1 SPOTGRACE_STOP_TIMEOUT=15 PYTHONPATH=$CODE \
  /work/main/.venv/bin/python -m gunicorn -b 127.0.0.1:$PORT -w 2 -c python:spotgrace.gunicorn \
  -k spotgrace.gunicorn.workers.$WORKER --chdir "$HERE" --log-level warning gapp:app &
PID=$!
sleep 3
(sleep 3; kill -TERM $PID) &
wrk -t2 -c64 -d10s --timeout 5s "http://127.0.0.1:$PORT/work?ms=5"
wait $PID
echo "master exit $?"
