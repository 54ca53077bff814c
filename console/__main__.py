"""`python -m console`: the web console alone (production); `masar up`
starts it with the rest of the local stack."""

from __future__ import annotations

import sys

from console.app import serve


def main() -> int:
    return serve()


if __name__ == "__main__":
    sys.exit(main())
