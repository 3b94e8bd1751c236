"""The office's pages for 差评 cases, served by the collector (docs/office.md).

- :mod:`central.office.passwords`: scrypt hashes of the accounts' passwords.
- :mod:`central.office.sessions`: sessions in memory and the login rate limit.
- :mod:`central.office.pages`: the HTML (Chinese, every value escaped).
- :mod:`central.office.today`: ``/today``, live: punches, windows, 脱岗 in progress.
- :mod:`central.office.server`: the aiohttp app and its thread beside the collector.
- :mod:`central.office.users_cli`: ``hall-central users``.
"""
