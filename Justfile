# gateway-host tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

components := "-p event-router -p rate-limiter -p command-validator -p voice-filter"

# List the recipes.
default:
    @just --list

# Install the wasm target the policy components are built for (idempotent).
setup:
    rustup target add wasm32-wasip2

# Create a component crate NAME for SLOT (event-router, rate-limiter, command-validator,
# voice-filter) in the current directory, from the template built into gateway-host; it
# builds, checks and passes its cases.jsonl unedited (see docs/component-authors.md).
[no-cd]
new-component NAME SLOT:
    rustup target add wasm32-wasip2
    cargo run --quiet --manifest-path {{justfile_directory()}}/Cargo.toml -p gateway-host -- component new --slot {{SLOT}} {{NAME}}

# Build the default policy components for wasm32-wasip2 and print where they are.
build-components: setup
    cargo build --profile component --target wasm32-wasip2 --target-dir target/wasm-components {{components}}
    @ls -1 target/wasm-components/wasm32-wasip2/component/*.wasm

# Run the demo: the host with an embedded simulator and the default components on :8080.
demo: setup
    cargo run --release -p gateway-host -- demo

# Cluster mode on loopback (docs/cluster.md): a private nats-server -js, the simulator at
# 20 events/s, and three hosts sharing its one link (:8081-:8083, admin :9191-:9193).
# Prints a token and what to try; Ctrl-C stops everything.
cluster-demo: setup
    #!/usr/bin/env bash
    set -euo pipefail
    nats=$(command -v nats-server || echo /usr/sbin/nats-server)
    [ -x "$nats" ] || { echo "cluster-demo needs nats-server: apt-get install -y nats-server" >&2; exit 1; }
    cargo build --release -p gateway-host -p gateway-sim
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}/release"
    dir=$(mktemp -d)
    trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
    "$nats" -js -a 127.0.0.1 -p 4222 -sd "$dir/nats" > "$dir/nats.log" 2>&1 &
    "$target/gateway-sim" --listen 127.0.0.1:7070 --token cluster-demo-link --rate 20 > "$dir/sim.log" 2>&1 &
    export GATEWAY_NATS_URL=nats://127.0.0.1:4222 LINK_URL=ws://127.0.0.1:7070/link LINK_TOKEN=cluster-demo-link
    export GATEWAY_JWT_SECRET=cluster-demo-jwt-secret-0123456789abcdef GATEWAY_ADMIN_TOKEN=cluster-demo-admin
    printf '[cluster]\nlease-ttl-ms = 3000\n' > "$dir/cluster.toml"
    for i in 1 2 3; do
        GATEWAY_CLUSTER_HOST_ID=host-$i GATEWAY_HTTP_ADDR=127.0.0.1:808$i GATEWAY_ADMIN_ADDR=127.0.0.1:919$i \
            "$target/gateway-host" serve --config "$dir/cluster.toml" > "$dir/host-$i.log" 2>&1 &
    done
    for i in 1 2 3; do
        for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:808$i/readyz" >/dev/null && break; sleep 0.1; done
        curl -s "http://127.0.0.1:808$i/readyz" | head -c 300; echo
    done
    token=$("$target/gateway-host" token --sub 100000000000000001)
    echo
    echo "Three hosts share one upstream link (logs in $dir). Try:"
    echo "  curl -N -H 'Authorization: Bearer $token' http://127.0.0.1:8081/api/stream   # same ids on :8082, :8083"
    echo "  curl -s http://127.0.0.1:8082/readyz        # cluster.holdsLink says which host holds the link"
    echo "  kill the holder's process: another host takes the link within the lease TTL (3 s);"
    echo "  resume on another host with -H 'Last-Event-ID: <last id>'"
    echo "Ctrl-C stops everything."
    wait

# Run the host against a real upstream (needs LINK_TOKEN and GATEWAY_JWT_SECRET).
serve *ARGS: setup
    cargo run --release -p gateway-host -- serve {{ARGS}}

# Run the upstream simulator on its own.
sim *ARGS:
    cargo run --release -p gateway-sim -- {{ARGS}}

# Formatting and lints, host and components.
lint: setup
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    cargo clippy --target wasm32-wasip2 --target-dir target/wasm-components {{components}} -p hostile-limiter -p hostile-router -p voice-typing -p keyed-limiter -p redacting-router -p wit-v2-router -p wit-v1-1-router -p example-voice-filter -- -D warnings

# The full test suite: lints, unit tests and end-to-end tests (real sockets, simulator, components),
# the browser client's tests (`js-test`),
# then the HTTP contract check (schemathesis against docs/openapi.yaml on a live host).
test: lint
    @command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { echo "the cluster tests need nats-server: apt-get install -y nats-server" >&2; exit 1; }
    cargo build -p gateway-sim --bin gateway-sim
    just py-component
    just js-component
    cargo test
    just js-test
    just contract

# The browser client (clients/js): node --test unit tests (fake EventSource/WebSocket, React
# hook, TypeScript types), and the served /client.js against a live `gateway-host demo`.
js-test:
    cargo build -p gateway-host
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; \
    cd clients/js && npm ci --silent --no-audit --no-fund && \
    GATEWAY_HOST_BIN="$target/debug/gateway-host" npm test

# The Python example component (examples/python-router, an event-router): componentize-py
# (PyPI, pinned in requirements.txt) in a venv under the target dir, installed once; builds
# <target>/foreign-components/python-router.wasm (skipped when newer than its sources).
py-component:
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; \
    venv="$target/py-venv"; req=examples/python-router/requirements.txt; \
    if ! cmp -s "$req" "$venv/installed-requirements.txt"; then \
        rm -rf "$venv" && python3 -m venv "$venv" && \
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" && \
        cp "$req" "$venv/installed-requirements.txt"; \
    fi; \
    out="$target/foreign-components/python-router.wasm"; mkdir -p "$(dirname "$out")"; \
    if [ -f "$out" ] && [ -z "$(find examples/python-router/app.py wit "$venv/installed-requirements.txt" -newer "$out")" ]; then \
        echo "up to date: $out"; \
    else \
        (cd examples/python-router && "$venv/bin/componentize-py" -d ../../wit -w event-router componentize app -o "$out.tmp") && \
        mv "$out.tmp" "$out" && echo "built: $out"; \
    fi

# The JavaScript example component (examples/js-validator, a command-validator):
# componentize-js (npm, pinned by package-lock.json) installed with `npm ci` under the target
# dir, once; builds <target>/foreign-components/js-validator.wasm (skipped when up to date).
# `--disable http fetch-event` keeps wasi:http out of its imports (the sandbox refuses it).
js-component:
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; \
    tools="$target/js-toolchain"; src=examples/js-validator; \
    if ! cmp -s "$src/package-lock.json" "$tools/package-lock.json" || [ ! -x "$tools/node_modules/.bin/componentize-js" ]; then \
        mkdir -p "$tools" && cp "$src/package.json" "$src/package-lock.json" "$tools/" && \
        (cd "$tools" && npm ci --silent --no-audit --no-fund); \
    fi; \
    out="$target/foreign-components/js-validator.wasm"; mkdir -p "$(dirname "$out")"; \
    if [ -f "$out" ] && [ -z "$(find "$src/validator.js" wit "$tools/package-lock.json" -newer "$out")" ]; then \
        echo "up to date: $out"; \
    else \
        (cd "$src" && "$tools/node_modules/.bin/componentize-js" validator.js --wit ../../wit --world-name command-validator --disable http fetch-event -o "$out.tmp") && \
        mv "$out.tmp" "$out" && echo "built: $out"; \
    fi

# schemathesis (PyPI) in a venv under the target dir, installed once.
contract-tools:
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; \
    if [ ! -x "$target/contract-venv/bin/schemathesis" ]; then \
        python3 -m venv "$target/contract-venv" && \
        "$target/contract-venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5; \
    fi

# The HTTP API contract: schemathesis against docs/openapi.yaml on a live `gateway-host demo`.
contract: contract-tools
    cargo build -p gateway-host
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; \
    python3 tests/contract/run.py "$target/debug/gateway-host" "$target/contract-venv/bin/schemathesis"

# Browser tests of the demo page and the operator console (/admin/console): Debian's chromium
# driven by playwright-core (npm). Needs `apt-get install chromium` once; the screenshots land
# in <target>/e2e/. The console test uploads the `voice-typing` test component, built here.
e2e: setup
    cargo build -p gateway-host
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; \
    env -u CARGO_TARGET_DIR cargo build --profile component --target wasm32-wasip2 --target-dir "$target/wasm-components" -p voice-typing
    cd tests/browser && npm ci --silent --no-audit --no-fund
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; node tests/browser/demo.mjs "$target/debug/gateway-host" "$target/e2e"
    target="${CARGO_TARGET_DIR:-{{justfile_directory()}}/target}"; node tests/browser/console.mjs "$target/debug/gateway-host" "$target/wasm-components/wasm32-wasip2/component" "$target/e2e"

# Benchmarks (see bench/RESULTS.md for the latest figures): component calls, then the SSE
# harness against a release `gateway-host serve` process on loopback, then three hosts in
# cluster mode on a private nats-server (fan-out, and a SIGKILL failover).
bench: setup
    cargo bench -p gateway-host --bench policy_calls
    cargo bench -p gateway-host --bench command_dispatch
    cargo build --release -p gateway-host -p gateway-bench
    target/release/sse-bench latency --rate 1000 --clients 100
    target/release/sse-bench latency --rate 100 --clients 1000
    target/release/sse-bench latency --rate 500 --clients 500
    target/release/sse-bench latency --rate 1000 --clients 1000
    target/release/sse-bench idle --clients 10000
    target/release/sse-bench cluster --rate 1000 --clients 300
    target/release/sse-bench cluster --rate 500 --clients 900
    target/release/sse-bench failover --rate 200
