"""The device's side of the wire: the uplink (outbox → centre, acks, status), the downlink
(the centre's retained roster and schedule, written to files the device reads) and
``hall-agent ping``. Built on what both programs share in :mod:`sync`; nothing outside the
entry points (agent/cli.py, agent/runtime.py) imports this package."""
