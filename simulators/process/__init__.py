"""Process models of the default plant. Pure computation: no I/O, no clock, deterministic for a seed."""
