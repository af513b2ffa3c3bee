"""Compare `cargo test` output of the upstream integration suite with expectations.txt."""
import re
import sys

out = open(sys.argv[1], encoding="utf-8", errors="replace").read()
expected = {}
for line in open(sys.argv[2], encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith("#"):
        name, reason = line.split(None, 1)
        expected[name] = reason
results = dict(re.findall(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", out, re.M))
if len(results) < 25:
    sys.exit(f"only {len(results)} upstream tests ran: the suite did not build or run")
bad = []
for name, status in sorted(results.items()):
    if name in expected:
        verdict = "out of scope" if status == "FAILED" else f"passes although listed out of scope ({status})"
        if status != "FAILED":
            bad.append(name)
    else:
        verdict = "pass" if status == "ok" else status
        if status != "ok":
            bad.append(name)
    print(f"  {verdict:<14} {name}" + (f"  — {expected[name]}" if name in expected else ""))
passed = sum(1 for s in results.values() if s == "ok")
print(f"dakera-client 0.12.3 integration_test: {passed} pass, {len(expected)} out of scope, {len(bad)} unexpected")
if bad:
    sys.exit("unexpected results: " + ", ".join(bad))
