"""Dynamics 365: husvakt cases as Dataverse incidents (or Connected Field Service IoT
alerts), kept in step both ways. `sink` mirrors, `client` speaks the Web API, `mapping` turns
a case into rows, `batch` codes `$batch` bodies, `check` validates a mapping against the live
metadata."""
