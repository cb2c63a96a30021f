"""The gateway: reads sensors and uplinks their readings (what runs on the Raspberry Pi).

Public names, by module (imported from there; this file imports nothing, so that a small Pi
loads only what it runs):

- `models`: `Reading` (the v1 contract), `Frozen`, `Slug`, `format_ts`
- `wire`: every encode and decode of the v1 wire (`encode_batch`, `decode_batch`, …), bounded
- `config`: `GatewayConfig`, `SensorConfig`, the source points, `parse_duration`,
  `format_duration`
- `protocols`: the per-protocol codecs (`MqttCodec`, `SerialCodec`, `decode_answer`,
  `decode_w1`) — raw input → a sensor's value or fault
- `sources`: the I/O per protocol and their builders; `service`: `Gateway`, `run_gateway`,
  `SOURCE_TYPES`
- `normalize`: `Sample`, `normalize`; `outbox`: `SqliteOutbox`; `uplink`: the uplinks;
  `quarantine`: `Quarantine`; `clock`: `Clock`, `SystemClock`, `ScaledClock`, `every`
"""
