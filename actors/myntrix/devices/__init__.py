"""Myntrix devices: serial, TCP and MQTT devices, each a supervised actor owning its link."""
