"""docs/compatibility.md lists every public method of the installed dakera-py client with a status."""

import dakera
from dakera import AsyncDakeraClient, DakeraClient

from inventory import DOC, documented_methods, public_methods

STATUSES = {"supported", "partial", "not planned"}


def test_sdk_version_is_the_pinned_one():
    assert dakera.__version__ == "0.14.1"


def test_every_public_method_is_documented():
    doc = documented_methods()
    methods = set(public_methods(DakeraClient)) | set(public_methods(AsyncDakeraClient))
    missing = sorted(methods - set(doc))
    assert not missing, f"{DOC} lacks rows for: {', '.join(missing)}"
    unknown = sorted(set(doc) - methods)
    assert not unknown, f"{DOC} lists methods dakera-py 0.14.1 does not have: {', '.join(unknown)}"
    bad = {m: s for m, s in doc.items() if s not in STATUSES}
    assert not bad, f"statuses must be one of {STATUSES}: {bad}"
