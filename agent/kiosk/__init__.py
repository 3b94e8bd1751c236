"""The attendance kiosk: camera → faces → a punch, its gallery and enrolment, its screen.

Only a device with an ``[attendance]`` section loads this package (agent/runtime.py), and the
vision stack (cv2, dlib, numpy) only inside it, lazily: a window device never imports it
(docs/architecture.md). It never imports :mod:`agent.windows` or :mod:`agent.link`.
"""
