"""The hall board: a page for a screen at the hall's entrance (docs/board.md).

Regulation art. 32 wants the staff and their posts shown at the entrance, art. 19 a paused
window marked 暂停服务. :mod:`central.board.state` turns the central store's window and rating
events into the board; :mod:`central.board.server` serves it and pushes changes (SSE).
"""
