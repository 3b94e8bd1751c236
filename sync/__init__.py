"""What both programs share on the wire: the MQTT link (mqtt, paho_loop), broker probes,
systemd notification and CLI plumbing. It imports only :mod:`contract`, so the centre can use
it without the device's code (the device's uplink, downlink and ping are in agent/link/)."""
