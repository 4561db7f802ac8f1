"""``python -m actors.myntrix.devices.simulator``: see :mod:`actors.myntrix.devices.simulator.serve`."""

import os
import sys

from actors.myntrix.devices.simulator.serve import main

status = main()
# Everything the simulator holds is released when main() returns (the pty closed, the link
# removed). What is left is the interpreter's teardown of the modules the parent package
# imports (sqlalchemy, pydantic, the drivers): most of a second on a small box, for nothing.
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
