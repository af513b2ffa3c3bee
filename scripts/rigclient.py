"""The compose rig from the host, for the measurement scripts: the root key from deploy/.env and
one REST call to a node's published port (loci-N on 127.0.0.1:330N). Standard library only."""

import json
import os
import sys
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def root_key(tool):
    with open(os.path.join(ROOT, "deploy", ".env")) as f:
        for line in f:
            if line.startswith("LOCI_ROOT_API_KEY="):
                return line.split("=", 1)[1].strip()
    sys.exit(f"{tool}: no LOCI_ROOT_API_KEY in deploy/.env (make rig-up writes it)")


def call(node, key, method, path, body=None, timeout=60, raw_body=None):
    """(status, body bytes) of one request to loci-`node`; status 0 when nothing answered."""
    url = f"http://127.0.0.1:{3300 + node}{path}"
    data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        return 0, str(e).encode()
