"""Script the published dakera-cli 0.8.2 (`dk`) against a live Loci node: health, namespaces,
memories, sessions, agents and keys, asserting on exit codes and output.

    python3 cli_check.py DK_BINARY URL   (the key comes from DAKERA_API_KEY, as the CLI expects)
"""
import json
import re
import subprocess
import sys
import time

dk, url = sys.argv[1], sys.argv[2]
failures = []


def run(*args, expect=0, fmt=None):
    cmd = [dk, "-u", url] + (["-f", fmt] if fmt else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    ok = p.returncode == expect if isinstance(expect, int) else p.returncode in expect
    label = " ".join(args)
    if not ok:
        failures.append(f"`dk {label}` exited {p.returncode} (expected {expect}): {p.stdout[-400:]} {p.stderr[-400:]}")
    print(f"  {'ok  ' if ok else 'FAIL'} dk {label} -> {p.returncode}")
    return p.stdout + p.stderr


def check(cond, what):
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures.append(what)


suffix = f"{int(time.time() * 1000) % 10**8:x}"
ns, agent = f"cli-ns-{suffix}", f"cli-agent-{suffix}"

check("healthy" in run("health"), "health says healthy")
health = json.loads(run("health", fmt="json"))
check(bool(health.get("version")), "health --format json has a version")
run("health", "ready")
run("health", "live")
run("capabilities")

# Namespaces: idempotent create, list, get, delete, then get exits 3 (not found).
check("created" in run("namespace", "create", ns, "-d", "8").lower(), "namespace create")
check("already exists" in run("namespace", "create", ns, "-d", "8"), "second create says already exists")
check(ns in run("namespace", "list"), "namespace list has it")
run("namespace", "get", ns)
check("deleted" in run("namespace", "delete", ns, "--yes"), "namespace delete")
run("namespace", "get", ns, expect=3)

# Memories: store, recall, search, get, forget.
out = run("memory", "store", agent, "The staging database lives in Frankfurt", "-i", "0.9")
m = re.search(r"id: ([^,\s)]+)", out)
check(m is not None, "memory store prints the id")
mid = m.group(1) if m else "missing"
run("memory", "store", agent, "Coffee machine is on the third floor", "-i", "0.2")
recalled = json.loads(run("memory", "recall", agent, "where is the staging database", "-k", "2", fmt="json"))
mems = recalled.get("memories", [])
check(bool(mems) and mems[0].get("id") == mid, "recall finds the stored memory first")
scores = [x.get("rank_score", x.get("score", 0)) for x in mems]
check(scores == sorted(scores, reverse=True), "recall scores are non-increasing")
check("Frankfurt" in run("memory", "search", agent, "staging database"), "search finds it")
check("Frankfurt" in run("memory", "get", agent, mid), "get returns it")
check("Deleted" in run("memory", "forget", agent, mid), "forget deletes it")
check("Frankfurt" not in run("memory", "search", agent, "staging database"), "forgotten memory is not found")
run("memory", "recall", agent + "-empty", "anything")
run("memory", "store", agent, "x", "--lang", "xx", expect=5)

# Sessions and agents.
out = run("session", "start", agent)
s = re.search(r"id: ([^,\s)]+)", out)
check(s is not None, "session start prints the id")
if s:
    run("session", "end", s.group(1))
check(agent in run("session", "list", "-a", agent) or "sess" in run("session", "list", "-a", agent), "session list")
check(agent in run("agent", "list"), "agent list has the agent")

# Keys.
out = run("keys", "create", f"cli-key-{suffix}", "-p", "read")
k = re.search(r"(key_[A-Za-z0-9_-]+|[0-9a-f-]{36})", out)
check("dk" in out or k is not None, "keys create prints the key")
check(f"cli-key-{suffix}" in run("keys", "list"), "keys list has it")

# Backups (run.sh gives the node a backup store): create and wait, list, get, schedule, delete.
out = run("admin", "backup-create", "--name", f"cli-bk-{suffix}", "--wait", "--timeout", "120", fmt="json")
m = re.search(r'"backup_id":\s*"([^"]+)"', out)
check(m is not None and "completed" in out, "admin backup-create --wait completes")
check(f"cli-bk-{suffix}" in run("admin", "backup-list", fmt="json"), "admin backup-list has it")
if m:
    check("completed" in run("admin", "backup-get", m.group(1), fmt="json"), "admin backup-get says completed")
check("cron" in run("admin", "backup-schedule", fmt="json"), "admin backup-schedule shows the schedule")
if m:
    run("admin", "backup-delete", m.group(1))

if failures:
    print("\n".join(["dakera-cli check failed:"] + failures))
    sys.exit(1)
print("dakera-cli 0.8.2: every scripted command behaved")
