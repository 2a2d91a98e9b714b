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
