"""Simulated devices: PLCs, meter, firewall, sensors, HMI, each speaking its real protocol."""
