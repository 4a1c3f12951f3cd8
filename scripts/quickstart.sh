#!/usr/bin/env bash
# Cordon quick start on embedded defaults: a demo policy directory, a signing key, a manifest
# from a role template, signed, verified and explained; then a tampered copy, which is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f dist/cli/main.js ] || [ -n "$(find src -newer dist/cli/main.js -print -quit)" ]; then npm run build --silent; fi
demo=${CORDON_DEMO_DIR:-$(mktemp -d -t cordon-demo-XXXXXX)}
mkdir -p "$demo"
export CORDON_HOME="$demo/home"
cordon() { node dist/cli/main.js "$@"; }
step() {
  printf '\n\033[1m$ cordon %s\033[0m\n' "$*"
  cordon "$@"
}

step init
step keys generate --name security-team
step keys trust --name security-team --pub "$CORDON_HOME/policy/keys/security-team.pub" --purpose manifest
step manifest new --template finance-analyst --agent cowork-lite --param 'workDir=~/Work/Finance' --out "$demo/cowork-lite.json"
step manifest lint "$demo/cowork-lite.json"
step manifest sign "$demo/cowork-lite.json" --key "$CORDON_HOME/policy/keys/security-team.key"
step manifest verify "$demo/cowork-lite.signed.json"
step manifest explain "$demo/cowork-lite.signed.json"

# Decisions under the verified manifest: allowed, denied by a mandatory deny, needs approval,
# and a metadata address in hexadecimal disguise.
check() {
  printf '\n\033[1m$ cordon check %s\033[0m\n' "$*"
  cordon check --manifest "$demo/cowork-lite.signed.json" --verify --audit --home /home/demo --lexical "$@" || true
}
check read /home/demo/Work/Finance/q3/report.xlsx
check read /home/demo/Work/Finance/../../.ssh/id_ed25519
check write /home/demo/Work/Finance/outgoing/summary.pdf
check http GET http://0xa9fea9fe/latest/meta-data/
check api sheets:write:restricted
step policy test policy-tests/finance-analyst.policy.json

# The audit log: every decision above is an OCSF event in a hash chain with signed checkpoints.
# Add synthetic events of every kind, read them back, verify, then tamper with a copy.
step audit emit-test --count 2000
step audit tail -n 5 --where actor.app_name=cowork-lite
step audit status
step audit verify
cp -r "$CORDON_HOME/state" "$demo/tampered-state"
seg=$(ls "$demo/tampered-state/audit/segments/"*.ndjson | head -1)
sed -i '3s/"disposition":"Blocked"/"disposition":"Allowed"/; 3s/"disposition":"Delayed"/"disposition":"Allowed"/' "$seg"
printf '\n\033[1m$ cordon audit verify --state-dir tampered-state   (record 3 edited in place)\033[0m\n'
if cordon audit verify --state-dir "$demo/tampered-state"; then
  echo "quick start: an edited audit log verified" >&2
  exit 1
fi

# Widen the signed payload without re-signing: verification must refuse it.
node -e '
  const fs = require("fs");
  const [src, dst] = process.argv.slice(1);
  const env = JSON.parse(fs.readFileSync(src, "utf8"));
  const m = JSON.parse(Buffer.from(env.payload, "base64").toString());
  m.readPaths = ["/"];
  env.payload = Buffer.from(JSON.stringify(m)).toString("base64");
  fs.writeFileSync(dst, JSON.stringify(env, null, 2));
' "$demo/cowork-lite.signed.json" "$demo/tampered.signed.json"
printf '\n\033[1m$ cordon manifest verify tampered.signed.json   (payload widened after signing)\033[0m\n'
if cordon manifest verify "$demo/tampered.signed.json" --no-record; then
  echo "quick start: a tampered manifest was accepted" >&2
  exit 1
fi
printf '\nQuick start done: the tampered manifest and the edited audit log were both caught. Demo files are in %s\n' "$demo"
