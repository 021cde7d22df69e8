#!/usr/bin/env bash
# `make demo`: the brief's story, end to end, on the embedded SQLite default.
# A model is trained and deployed exactly as CI would, 2,000 decisions go
# through the inference proxy, and legal's question ("why was this applicant
# rejected?") is answered with the stored evidence and a proof anyone can check.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
export MRM_HOME=${MRM_HOME:-$ROOT/.mrm-demo}
export MRM_CONFIG_DIR="$MRM_HOME/mrmctl"          # the demo's own trust store
export MRM_REGISTRY_ADDR=${MRM_REGISTRY_ADDR:-127.0.0.1:50051}
export MRM_LEDGER_ADDR=${MRM_LEDGER_ADDR:-127.0.0.1:50052}
export MRM_EXPLAIN_ADDR=${MRM_EXPLAIN_ADDR:-127.0.0.1:50053}
export MRM_PROXY_ADDR=${MRM_PROXY_ADDR:-127.0.0.1:8001}
export MRM_MONITOR_ADDR=${MRM_MONITOR_ADDR:-127.0.0.1:50054}
export MRM_HTTP_ADDR=${MRM_HTTP_ADDR:-127.0.0.1:8000}
rm -rf "$MRM_HOME"          # every run starts from nothing, so a second run works too
mkdir -p "$MRM_HOME"
started=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m  (%ss)\n' "$*" "$(($(date +%s) - started))"; }

step "1. Start MRM in the background: mrm up (SQLite and artifacts in $MRM_HOME)"
"$BIN/mrm" up >"$MRM_HOME/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q '^mrm: ready' "$MRM_HOME/server.log" && break
  kill -0 $server 2>/dev/null || { cat "$MRM_HOME/server.log"; exit 1; }
  sleep 0.2
done
grep '^mrm:' "$MRM_HOME/server.log"

step "1b. The platform admin issues the data scientist a deployer token (recorded in the ledger)"
echo "\$ mrm auth issue --principal devin@credit-team.example --role deployer --model 'credit-*'"
"$BIN/mrm" auth issue --principal devin@credit-team.example --role deployer \
  --model 'credit-*' --expires-in 1d >"$MRM_HOME/devin.token"
chmod 600 "$MRM_HOME/devin.token"
export MRM_TOKEN_FILE="$MRM_HOME/devin.token"   # CI would hold it as a secret, or send its OIDC token
"$BIN/mrmctl" whoami

step "2. A data scientist trains a credit-application model (examples/credit/train.py)"
cd examples/credit
"$BIN/python" train.py

step "3. CI deploys it with one line (examples/credit/mrm.toml holds the rest)"
echo "\$ mrmctl deploy model.pkl --version 1.2.4"
"$BIN/mrmctl" deploy model.pkl --version 1.2.4
"$BIN/mrmctl" models show credit-risk

step "4. 2,000 applications are decided through the inference proxy (Triton's own client)"
"$BIN/python" send_applications.py --addr "$MRM_PROXY_ADDR"
cd "$ROOT"
unset MRM_TOKEN_FILE   # from here on: the admin (legal's and the auditor's questions)
applicant=$("$BIN/python" -c '
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["decision"] == "rejected"]
# a borderline-but-clear rejection, the kind a customer complains about
print(min(rows, key=lambda r: abs(float(r["p_default"]) - 0.8))["applicant"])' examples/credit/decisions.csv)
"$BIN/mrm" status

step "4b. Months later the ground truth arrives: which of them defaulted (outcomes.csv)"
echo "\$ mrmctl outcomes upload examples/credit/outcomes.csv    # as devin, the model's deployer"
MRM_TOKEN_FILE="$MRM_HOME/devin.token" "$BIN/mrmctl" outcomes upload examples/credit/outcomes.csv

step "4c. The population moves: 1,000 new applicants earn 1.8 times as much"
"$BIN/python" examples/credit/send_applications.py \
  --addr "$MRM_PROXY_ADDR" --applications examples/credit/applications_shifted.csv \
  --first 2001 --out examples/credit/decisions_shifted.csv
# The monitor judges each window of 500 decisions as it fills; the ALERT is a
# ledger record before anyone is notified. Wait (at most a minute) for it.
for _ in $(seq 1 300); do
  "$BIN/mrmctl" alerts list --model credit-risk --state firing --output json |
    "$BIN/python" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin) else 1)' && break
  sleep 0.2
done
echo "\$ mrmctl alerts list --model credit-risk"
"$BIN/mrmctl" alerts list --model credit-risk
echo "\$ mrmctl drift credit-risk"
"$BIN/mrmctl" drift credit-risk
alert=$("$BIN/mrmctl" alerts list --model credit-risk --state firing --output json |
  "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)[0]["record_id"])')
echo "\$ mrmctl alerts ack $alert --note 'new market segment; retraining scheduled'"
MRM_TOKEN_FILE="$MRM_HOME/devin.token" "$BIN/mrmctl" alerts ack "$alert" \
  --note "new market segment; retraining scheduled"

step "5. Legal calls: \"why was $applicant rejected?\""
echo "\$ mrmctl why --subject $applicant"
"$BIN/mrmctl" why --subject "$applicant" --report-file "$MRM_HOME/report-$applicant.html"

step "6. The regulator asks for proof: the whole log checked, then one file to take away"
"$BIN/mrmctl" ledger verify
vkey=$("$BIN/mrmctl" ledger checkpoint --output json |
  "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["verifier_key"])')
bundle="$MRM_HOME/evidence-credit-risk.zip"
echo "\$ mrmctl evidence credit-risk -o $bundle"
"$BIN/mrmctl" evidence credit-risk -o "$bundle"
echo "\$ mrmctl evidence verify $bundle --vkey \$VKEY     # offline: no server, no network"
( cd /tmp && env -i PATH=/usr/bin:/bin "$BIN/mrmctl" evidence verify "$bundle" --vkey "$vkey" )

step "7. The C-suite asks: are our models under control? (the governance dashboard)"
"$BIN/mrm" auth issue --principal auditor@credit-team.example --role auditor \
  --expires-in 1d >"$MRM_HOME/auditor.token"
chmod 600 "$MRM_HOME/auditor.token"
echo "Dashboard: http://$MRM_HTTP_ADDR/dashboard  (sign in with the token in $MRM_HOME/auditor.token)"

step "8. Done"
echo "The report for $applicant: $MRM_HOME/report-$applicant.html"
echo "  (while MRM runs it is also served at http://$MRM_HTTP_ADDR/reports/…; see the link above)"
echo "The evidence bundle: $bundle (docs/evidence.md says how to check it by hand)"
echo "The ledger's verifier key: $vkey"
if [ -t 0 ]; then
  read -r -p "MRM is still running: open the dashboard, then press Enter to stop it. " _
fi
echo "Stopping MRM."
