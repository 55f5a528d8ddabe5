"""``python -m vmx_server`` is ``vmx serve``."""

import sys

from vmx_server.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
