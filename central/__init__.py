"""The central program: what runs on the centre's server (reports, leave, roster files).

The collector, store and CLI still live in ``sync/``; they move here later. Nothing in this
package may import the device's ``agent`` package except through :mod:`central.hours` (one
line to change when the schedule moves to a shared module).
"""
