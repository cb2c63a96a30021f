"""Simulated devices that speak the real protocols (MQTT, Modbus TCP, serial lines), as
hardware would. This package imports nothing from husvakt's own packages."""
