#!/usr/bin/env bash
# Builds the Kubernetes control plane the "kubernetes" and "cluster" test tiers run:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and kubectl, from
# Go modules (no Docker, no downloaded binaries). Binaries go to a cache outside the
# repository keyed by version; a binary already there is not rebuilt, so a second run
# costs nothing. Prints the cache's bin directory on stdout, progress on stderr.
# `--print-bin` prints that directory and builds nothing (the test tiers find it this way).
# A cold build takes about 13 minutes on an idle 2-core machine (up to 30 under load).
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.36.3}
STAGING_VERSION=${STAGING_VERSION:-v0.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${ATOLL_K8S_CACHE:-$HOME/.cache/atoll/k8s}
KEY="k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
BIN="$CACHE/$KEY/bin"
SRC="$CACHE/$KEY/src"
if [ "${1:-}" = --print-bin ]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN" "$SRC"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { echo "[k8s-build] $*" >&2; }
have() { [ -x "$BIN/$1" ]; }
start=$SECONDS

k8s_wrapper() {  # a module that requires k8s.io/kubernetes with its staging modules pinned
  local dir="$SRC/kubernetes"
  [ -f "$dir/go.sum" ] && [ -f "$dir/.complete" ] && { echo "$dir"; return; }
  mkdir -p "$dir"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module atoll.local/k8s-tools"
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug default=' "$gomod" || true
    echo "require k8s.io/kubernetes $K8S_VERSION"
    # The staging modules are the release's `replace k8s.io/X => ./staging/src/k8s.io/X`
    # lines (not every `v0.0.0` requirement: kube-openapi and utils have pseudo-versions).
    go mod edit -json "$gomod" | python3 -c 'import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"): print(r["Old"]["Path"])' | sort -u |
      while read -r m; do echo "replace $m => $m $STAGING_VERSION"; done
  } > "$dir/go.mod"
  cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$dir" && go mod tidy >&2)
  touch "$dir/.complete"
  echo "$dir"
}

build_k8s() {  # build_k8s NAME
  have "$1" && return
  local dir t=$SECONDS pkg=k8s.io/kubernetes/cmd/$1 ver="k8s.io/component-base/version"
  dir=$(k8s_wrapper)
  log "building $1 $K8S_VERSION ..."
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  (cd "$dir" && go build -trimpath -ldflags "-s -w -X $ver.gitVersion=$K8S_VERSION -X $ver.gitMajor=1 -X $ver.gitMinor=$minor" -o "$BIN/$1.tmp" "$pkg")
  mv "$BIN/$1.tmp" "$BIN/$1"
  log "$1 built in $((SECONDS - t)) s"
}

build_etcd() {
  have etcd && return
  local dir="$SRC/etcd" t=$SECONDS
  mkdir -p "$dir"
  if [ ! -f "$dir/go.sum" ]; then
    printf 'module atoll.local/etcd-tools\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$dir/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$dir/tools.go"
    (cd "$dir" && go mod tidy >&2)
  fi
  log "building etcd $ETCD_VERSION ..."
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  log "etcd built in $((SECONDS - t)) s"
}

build_kwok() {
  have kwok && [ -f "$CACHE/$KEY/kwok-stages.yaml" ] && return
  local t=$SECONDS
  if ! have kwok; then
    log "building kwok $KWOK_VERSION ..."
    GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  fi
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  local stages="$dir/kustomize/stage"
  {
    first=1
    for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
             pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      [ $first = 1 ] || echo "---"; first=0; cat "$stages/$f"
    done
  } > "$CACHE/$KEY/kwok-stages.yaml.tmp"
  mv "$CACHE/$KEY/kwok-stages.yaml.tmp" "$CACHE/$KEY/kwok-stages.yaml"
  log "kwok ready in $((SECONDS - t)) s"
}

build_etcd
build_k8s kube-apiserver
build_k8s kube-controller-manager
build_k8s kube-scheduler
build_k8s kubectl
build_kwok
log "control plane ready in $((SECONDS - start)) s: $BIN"
echo "$BIN"
