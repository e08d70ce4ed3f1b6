#!/usr/bin/env python3
"""Key rotation agent (work in progress: the full implementation replaces this file shortly)."""
import json
import sys

RESULT_MARKER = "KEYROTATION_RESULT"

if __name__ == "__main__":
    result = {"status": "error", "error": "internal", "message": "not implemented yet"}
    print(RESULT_MARKER + " " + json.dumps(result))
    #.dumps({"status": "error", "error": "internal", "message": "not implemented yet"}))
    sys.exit(1)
