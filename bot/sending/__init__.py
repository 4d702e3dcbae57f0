"""Emailing one-time credentials: who can be mailed, batches, and the sender that keeps credbot's promise.

The invariant (kept by `bot.sending.sender`, tested in tests/test_send_engine.py):

- At most one delivery in flight per account across all processes.
- A credential becomes the account's password only once the mail API accepted the email carrying it.
- A pending credential that may have reached the employee stays valid until it expires.
- Every delivery ends as sent, failed, skipped or in doubt, each with its reason.
- Fencing: a runner's ending, promotion and lease renewal take effect only while its claim's fencing
  token is current (`claims`); a runner that lost its claim changes no account.

Modules: `recipients` (who can be mailed, the confirmation list), `batches` (starting, counting,
listing and summarising batches), `sender` (the runner: what happens to each delivery, the fencing
rule), `lifecycle` (a run's threads, stop, drain and end), `leases` (renewing claims, the heartbeat),
`claims` (the SQL of claims, leases and fencing tokens), `endings` (the SQL of a delivery's ending),
`runs` (the SQL of a batch's run: heartbeat, end, resume), `targets` (each employee read again at send
time), `emails` (the two emails), `outcomes` (why a delivery ended as it did, and the wording),
`retry` (transactions retried through a database outage), `jobs` (the background jobs that run and
resume batches). The credential mode's strategy is `bot.credential_modes`.
Credential changes themselves live in `bot.credentials`, shared with the portal.
"""
