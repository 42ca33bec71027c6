#!/usr/bin/env bash
# `make demo-rollout`: a staged rollout on simulated devices, with no Azure account.
#
#   1. A good scorer goes through two rings (canary, then site a) to every device.
#   2. A broken scorer fails on the canary and is rolled back automatically.
#
# Soak times pass without waiting: RECONCILER_NOW pins the clock at each step. The demo works on
# a scratch copy of the repository (.reconciler/demo-rollout/repo), so the broken change never
# touches your working tree. After each step `device show` says which device runs what.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
R="$ROOT/.venv/bin/reconciler"
WORK="$ROOT/.reconciler/demo-rollout"
E=environments/rollout-demo

rm -rf "$WORK"
mkdir -p "$WORK/repo/environments" "$WORK/repo/models"
cp -r "$ROOT/$E" "$WORK/repo/environments/"
cp -r "$ROOT/models/iris" "$ROOT/models/iris-broken" "$WORK/repo/models/"
mkdir "$WORK/repo/.git"  # the repository root, as a clone would have it
cd "$WORK/repo"
export RECONCILER_STATE_DIR="$WORK/state"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
at() { export RECONCILER_NOW="2026-11-28T$1:00Z"; say "$1 UTC: $2"; }
show() { for device in cam-canary cam-a1 cam-a2 cam-b1; do "$R" device "$E" show "$device" | sed -n '1p;4,$p'; done; }

"$R" device "$E" add cam-canary --tag environment=demo --tag ring=canary --tag site=b \
  --tag 'failImages=*iris-scorer-broken*' > /dev/null
"$R" device "$E" add cam-a1 --tag environment=demo --tag site=a > /dev/null
"$R" device "$E" add cam-a2 --tag environment=demo --tag site=a > /dev/null
"$R" device "$E" add cam-b1 --tag environment=demo --tag site=b > /dev/null
echo "Devices: cam-canary (ring=canary; it fails any image matching *iris-scorer-broken*), cam-a1, cam-a2 (site a), cam-b1."

at 09:00 "first apply: the scorer starts on the canary ring"
"$R" apply "$E" --auto-approve
show

at 09:20 "20 minutes later: the canary ring soaks for 30m"
"$R" rollout "$E" status

at 09:31 "the scheduled rollout job: canary soaked and healthy -> site a"
"$R" apply "$E" --rollouts-only --auto-approve
show

at 11:35 "site a soaked 2h and healthy -> every device"
"$R" apply "$E" --rollouts-only --auto-approve
show

at 12:00 "a broken scorer is merged: it starts on the canary ring"
sed -i.bak 's/image: iris-scorer$/image: iris-scorer-broken/' "$E/deployments.yaml" && rm "$E/deployments.yaml.bak"
"$R" plan "$E" --out "$WORK/broken-plan.json" > /dev/null
"$R" apply "$WORK/broken-plan.json"
show

at 12:07 "the scheduled rollout job: the canary reports failure -> rolled back"
"$R" apply "$E" --rollouts-only --auto-approve
show

at 13:00 "the next plan: the failure is kept in the hub, nothing is retried (exit 0)"
"$R" plan "$E" --detailed-exitcode
