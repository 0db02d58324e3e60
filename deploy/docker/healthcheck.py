"""Container health probe: exit 0 when the URL answers 2xx within two seconds, else 1 (no curl in slim)."""

import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except Exception as exc:  # any failure is "unhealthy"; the reason goes to `docker inspect`
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
