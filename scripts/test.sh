#!/usr/bin/env bash
# Runs every test tier, timing each. A tier this machine cannot run is reported loudly
# with the command that installs what it lacks; with CI=true that is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
UV=$(command -v uv || echo "python3 -m uv")
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
CI=${CI:-false}
declare -a SUMMARY=()
FAILED=0

tier() {  # tier NAME COMMAND...
  local name=$1; shift
  local start=$SECONDS
  echo -e "\n=== tier: $name"
  "$@"
  local rc=$?
  # pytest exit 5 means no tests were collected: a tier that ran nothing is a failure.
  SUMMARY+=("$(printf '%-24s %-6s %4ss' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL)" $((SECONDS - start)))")
  [ $rc = 0 ] || FAILED=1
}

cannot_run() {  # cannot_run NAME HOW-TO-INSTALL
  echo -e "\n!!! tier $1 CANNOT RUN on this machine: $2" >&2
  SUMMARY+=("$(printf '%-24s %-6s' "$1" "NOT RUN")")
  if [ "$CI" = true ]; then FAILED=1; fi
}

ensure_chromium() {
  command -v chromium >/dev/null && return 0
  [ "$(id -u)" = 0 ] || return 1
  echo "installing Chromium from Debian packages..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

tier lint bash -c "$UV run ruff check . && $UV run ruff format --check . && $UV run mypy -p atoll && $UV run mypy --explicit-package-bases tests bench && $UV run lint-imports"
tier unit $UV run pytest tests/unit -q -p no:cacheprovider
tier "integration (sqlite)" env ATOLL_TEST_DB=sqlite $UV run pytest tests/integration -q -p no:cacheprovider

if PG_URL=$(scripts/postgres.sh start); then
  tier "integration (postgres)" env ATOLL_TEST_DB=postgresql ATOLL_TEST_POSTGRES_URL="$PG_URL" \
    $UV run pytest tests/integration -q -p no:cacheprovider
else
  cannot_run "integration (postgres)" "sudo apt-get install -y postgresql (then re-run make test)"
fi

# Kubernetes: the control plane is built from Go modules into a cache outside the repository
# (scripts/k8s-build.sh: minutes the first time, nothing after); the tiers start only after it.
if command -v go >/dev/null; then
  k8s_start=$SECONDS
  if K8S_BIN=$(bash scripts/k8s-build.sh 2>/tmp/atoll-k8s-build.log); then
    echo -e "\n=== Kubernetes control plane build step: $((SECONDS - k8s_start)) s ($K8S_BIN)"
    tier kubernetes env ATOLL_TEST_K8S_BIN="$K8S_BIN" $UV run pytest tests/kubernetes -q -p no:cacheprovider
    tier cluster env ATOLL_TEST_K8S_BIN="$K8S_BIN" $UV run pytest tests/cluster -q -p no:cacheprovider
  else
    tail -20 /tmp/atoll-k8s-build.log >&2
    echo "Kubernetes control plane build FAILED after $((SECONDS - k8s_start)) s (log: /tmp/atoll-k8s-build.log)" >&2
    cannot_run kubernetes "the control plane build failed: see above, then bash scripts/k8s-build.sh"
    cannot_run cluster "the control plane build failed: see above, then bash scripts/k8s-build.sh"
  fi
else
  cannot_run kubernetes "install Go (https://go.dev/dl), then bash scripts/k8s-build.sh builds the control plane"
  cannot_run cluster "install Go (https://go.dev/dl), then bash scripts/k8s-build.sh builds the control plane"
fi

if ensure_chromium; then
  tier e2e env ATOLL_TEST_CHROMIUM="$(command -v chromium)" $UV run pytest tests/e2e -q -p no:cacheprovider
else
  cannot_run e2e "sudo apt-get install -y chromium (then re-run make test)"
fi

echo -e "\n=== summary"
printf '  %s\n' "${SUMMARY[@]}"
exit $FAILED
