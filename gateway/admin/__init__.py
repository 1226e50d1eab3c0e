"""The admin API (SPEC §7): an aiohttp sub-application under `/admin` with its own JWT
and error middleware, in front of the same services the CLI calls."""
