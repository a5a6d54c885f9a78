#!/bin/sh
# A shell entrypoint that traps SIGTERM, cleans up its own child and exits 7.
trap 'echo "trapped SIGTERM"; kill "$pid" 2>/dev/null; exit 7' TERM
sleep 600 &
pid=$!
echo ready
wait "$pid"
