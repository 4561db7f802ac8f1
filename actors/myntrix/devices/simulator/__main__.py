"""``python -m actors.myntrix.devices.simulator``: see :mod:`actors.myntrix.devices.simulator.serve`."""

from actors.myntrix.devices.simulator.serve import main

raise SystemExit(main())
