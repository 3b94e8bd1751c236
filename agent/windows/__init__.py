"""The window evaluation device: the rating pads' window state (state.py) and the HallPad v1
pad simulator for tests and demos (simulator.py). Never imports :mod:`agent.kiosk`, so a
pad-only device never loads the vision stack. Empty on purpose: the simulator must load
without the pad driver it is the independent counterpart of (simulator.py's docstring).
"""
