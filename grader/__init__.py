"""Grader: check library, engine, evidence, reports, standards data."""
