"""Myntrix (seeds 001, 002, 003): the things an edge box runs and drives.

Each part is a domain built on the kit (:mod:`actors.kit`), with the same file names:

- :mod:`actors.myntrix.agents`: programs the runtime keeps running as supervised processes;
- :mod:`actors.myntrix.devices`: devices over serial, TCP and MQTT, their telemetry and uploads;
- :mod:`actors.myntrix.scheduler`: cron tasks and their runs;
- :mod:`actors.myntrix.metrics`: the host's CPU, memory, disk and load;
- :mod:`actors.myntrix.visualization`: agents and devices as the 3D scene's nodes.

They share one section of ``config.toml``, ``[myntrix]`` (:mod:`actors.myntrix.config`).
"""
