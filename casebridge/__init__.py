"""The case bridge: alarms become cases that people act on — exactly one per condition.

Public names, by module (imported from there; this file imports nothing):

- `models`: `Case`, `CaseDraft`, `CaseEvent`, `User`, `Delivery`; `lifecycle`: the pure case
  decisions (`decide`, `Ledger`, `act`)
- `routing`, `enrich`, `people`: who gets a case, what it says, who is on call
- `access`: `Access`, `WorkList` — who may see and do what; `auth`: passwords and tokens
- `bridge`: `CaseBridge`; `store`: `CaseStore`, `open_store` (in `store.sql`); `notify`:
  `Notifier`, `Escalator`, the channels
- `app`: `create_app` — the API (`api`) and the web pages (`web`) on one application
"""
