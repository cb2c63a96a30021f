"""The stream: the rules, kept as data, applied to readings; alarms out.

Public names, by module (imported from there; this file imports nothing):

- `models`: `Alarm` (the v1 contract), `Severity`
- `config`: the rule rows (`ThresholdRule`, `RiseRule`, `OfflineRule`, `FaultRule`, …),
  `StreamConfig`, `DEFAULT_RULES`; `table`: `RuleTable` (the most specific row wins);
  `explain`: `explain_sensor`
- `rules`: the pure rule semantics (`evaluate`, `evaluate_sensor`, `tick`) and their states
- `core`: per-gateway tracks (`on_reading`, `on_status`, `on_tick`) and their encoding
- `engine`: `EmbeddedEngine`; `faust_engine`: `FaustEngine`; `state`: `SqliteRuleState`;
  `uplink_in`: `UplinkSubscriber`; `lag`: `LagMonitor`; `influx`: `InfluxHistory`
"""
