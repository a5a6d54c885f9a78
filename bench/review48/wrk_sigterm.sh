#!/bin/sh
# wrk (8 s, 2 threads, 50 connections, /work?ms=20) against alone_app.py (own uvicorn.Server,
# MODE wait|eager, drain_delay 1 s); SIGTERM at 3 s. LEAN=1 for the lean-path baseline.
# Usage: PYTHONPATH=$PWD sh bench/review48/wrk_sigterm.sh HTTP MODE
set -u
HTTP=$1 MODE=$2
PORT=$(/work/main/.venv/bin/python -c 'from bench.harness import free_port; print(free_port())')
DELAY=1 STOP=12 /work/main/.venv/bin/python bench/review48/alone_app.py "$PORT" "$MODE" "$HTTP" wsproto >/tmp/wrk48-server.log 2>&1 &
SERVER=$!
for i in $(seq 100); do curl -s "http://127.0.0.1:$PORT/work" >/dev/null && break; sleep 0.1; done
wrk -t2 -c50 -d8s "http://127.0.0.1:$PORT/work?ms=20" >/tmp/wrk48.out 2>&1 &
WRK=$!
sleep 3
kill -TERM $SERVER
wait $SERVER; echo "server exit $?"
wait $WRK
grep -E "requests in|Socket errors|Non-2xx" /tmp/wrk48.out
