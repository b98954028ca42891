"""The console entry point. It imports nothing heavy itself, so a Ctrl-C while torch loads ends
quietly with status 130 instead of a traceback."""

from __future__ import annotations

import os
import sys


def entry() -> None:
    try:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes") and not os.environ.get(
            "GRADINV_THREADS"
        ):
            # on a loaded 2-core CI box two intra-op threads are many times slower than one
            os.environ["GRADINV_THREADS"] = "1"
        from .cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    sys.exit(main())
