#!/usr/bin/env bash
# Every run behind docs/benchmarks.md, in order (about 25 minutes; the hour-long
# soak is left to run by itself). Run it on an otherwise idle machine; set
# DATABASE_URL to measure on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
run() { echo "## $*"; .venv/bin/python -m bench.run --json "$@"; }
sweep() { echo "## $*"; .venv/bin/python -m bench.run "$@" | grep -E '^(rate|saturation)'; }

for clients in 100 500 1000; do
  run --clients "$clients" --rate 10 --duration 20
done
run --clients 1000 --rate 10 --duration 20 --transport http
run --clients 1000 --rate 10 --duration 20 --layer pubsub
run --clients 1000 --rate 10 --duration 20 --server uvicorn
run --clients 1000 --rate 10 --duration 20 --server uvicorn --layer pubsub
sweep --clients 200 --senders 20 --duration 10 --rates 200,400,600,800
echo "## joins --clients 1000"; .venv/bin/python -m bench.joins --clients 1000
sweep --clients 200 --senders 20 --duration 10 --server uvicorn --rates 400,600,800,1000
sweep --clients 200 --senders 20 --duration 10 --server uvicorn --layer pubsub --rates 600,800,1000,1200,1400
run --clients 1000 --rooms 200 --rate 250 --duration 15
run --clients 1000 --rooms 200 --rate 250 --duration 15 --shards 2
echo "## rolling --clients 1000"; .venv/bin/python -m bench.rolling --clients 1000 --rooms 100 --rate 50
# The soak is an hour of its own: .venv/bin/python -m bench.soak --minutes 60
