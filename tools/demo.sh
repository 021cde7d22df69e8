#!/usr/bin/env bash
# The MRM journey on the embedded SQLite default, end to end, with real
# services: start `mrm up`, record a model's deployment and some decisions in
# the ledger, then prove and audit them as a regulator would, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export MRM_HOME=${MRM_HOME:-.mrm-demo}
export MRM_CONFIG_DIR="$MRM_HOME/mrmctl"          # the demo's own trust store
export MRM_LEDGER_ADDR=${MRM_LEDGER_ADDR:-127.0.0.1:50052}
export MRM_REGISTRY_ADDR=${MRM_REGISTRY_ADDR:-127.0.0.1:50051}
rm -rf "$MRM_HOME"
mkdir -p "$MRM_HOME"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "mrm up (registry on $MRM_REGISTRY_ADDR, ledger on $MRM_LEDGER_ADDR, SQLite in $MRM_HOME)"
"$BIN/mrm" up >"$MRM_HOME/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$BIN/mrmctl" ledger checkpoint >/dev/null 2>&1; then break; fi
  kill -0 $server 2>/dev/null || { cat "$MRM_HOME/server.log"; exit 1; }
  sleep 0.2
done
rm -rf "$MRM_CONFIG_DIR"   # forget the probe: the first real call below learns the key
"$BIN/mrmctl" ledger checkpoint

step "A data scientist hands over a model (examples/credit/train.py)"
(cd examples/credit && "../../$BIN/python" train.py)

step "CI deploys it with one line: mrmctl deploy model.pkl --version 1.2.4"
(cd examples/credit && "../../$BIN/mrmctl" deploy model.pkl --version 1.2.4)
"$BIN/mrmctl" models show credit-risk
m=(--model credit-risk --model-version 1.2.4)

step "Decisions are recorded (the inference proxy will do this; it lands with the proxy issue)"
for applicant in a-1001 a-1002 a-1003; do
  "$BIN/mrmctl" ledger append --kind prediction "${m[@]}" --subject "$applicant" \
    --body "{\"request\":{\"income\":52000,\"debt_to_income\":0.62},\"response\":{\"label\":\"reject\",\"p_default\":0.83},\"applicant\":\"$applicant\"}" \
    --output json > "$MRM_HOME/last-append.json"
  echo "recorded the decision for $applicant"
done
record=$("$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["record_id"])' "$MRM_HOME/last-append.json")

step "Legal asks about applicant a-1003: the stored decision"
"$BIN/mrmctl" ledger records --subject a-1003

step "A proof that this decision is in the signed log"
"$BIN/mrmctl" ledger proof "$record" --output json > "$MRM_HOME/proof.json"
cat "$MRM_HOME/proof.json"
vkey=$("$BIN/mrmctl" ledger checkpoint --output json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["verifier_key"])')

step "The regulator checks it offline, with nothing but the file and the log's public key"
"$BIN/mrmctl" ledger verify-proof "$MRM_HOME/proof.json" --vkey "$vkey"

step "And audits the whole log: every leaf re-derived, every checkpoint checked"
"$BIN/mrmctl" ledger verify

printf '\n\033[1mDone.\033[0m The ledger is in %s; its verifier key is %s\n' "$MRM_HOME" "$vkey"
