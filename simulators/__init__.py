"""The virtual plant: process models, devices, protocol adapters, broker, ground truth, control plane."""
