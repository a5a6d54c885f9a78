"""A small, guarded HTTP client for link-local metadata endpoints.

What it is for: bounded requests (timeouts, a body cap) to ECS task metadata,
EC2 IMDS and the ECS agent, and strict JSON parsing of their answers. The
host allow-list itself lives in :mod:`spotgrace._core._hosts`, since option
validation needs it too.

May import: :mod:`spotgrace._core` and httpx (imported lazily by callers:
nothing here is imported by ``import spotgrace``).

Start reading at :mod:`._fetch`, then :mod:`._strict`.
"""
