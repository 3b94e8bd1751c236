"""The states a device reports about itself: its components in the status message
(docs/topics.md "Status") and, on a kiosk, its camera and the faces it sees (docs/attendance.md).

Not event data: they are never stored as events, but the device and the pages that show them
must agree on every value.
"""

from __future__ import annotations

from typing import Literal

# A component's state in the status message (docs/topics.md "Status").
ComponentState = Literal["ok", "degraded", "fault"]
# A kiosk camera's state as drivers/camera.py Camera.health reports it; "starting" is the
# attendance worker's until its first report. The kiosk page shows each (docs/attendance.md).
CameraState = Literal["starting", "ok", "recovering", "fault", "ended"]
# Why a face was not encoded (drivers/faces.py): a track of such faces is ``low_quality``,
# and the kiosk page tells the person what to change.
FaceQuality = Literal["too_small", "blurred", "turned"]
