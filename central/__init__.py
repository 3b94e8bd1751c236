"""The central program: what runs on the centre's server (reports, leave, roster files).

The collector, store and CLI still live in ``sync/``; they move here later. Imports of the
device's ``agent`` package are confined to :mod:`central.hours` (the kiosks' schedule: one
line to change when it moves to a shared module) and :mod:`central.commands` (the CLI's
shared options and the central config, which the CLI in ``sync/`` takes from there too).
"""
