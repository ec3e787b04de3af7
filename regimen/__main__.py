"""``python -m regimen`` and the ``regimen`` console script."""

import sys

from regimen.commands import main

if __name__ == "__main__":
    sys.exit(main())
