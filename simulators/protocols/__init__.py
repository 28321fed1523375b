"""Protocol codecs shared by devices (Modbus frames, value encodings)."""
