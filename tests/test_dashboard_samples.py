"""A documented metric exposed with an extra label fails the metric contract, and its value is still judged: a
label slip must never hide a value error (found by the outsider round: a 10x level error scored as 'not judged')."""

from __future__ import annotations

from aiotlab.grader.checks.dashboard import find_sample, samples_of

PAGE = """# TYPE plant_tank_level_meters gauge
plant_tank_level_meters{unit="m"} 0.064
# TYPE plant_sensor_vibration_mm_per_second gauge
plant_sensor_vibration_mm_per_second{node="vib-01"} 1.5
plant_sensor_vibration_mm_per_second{node="vib-02"} 2.5
"""


def test_extra_labels_still_find_the_value_exact_labels_win() -> None:
    samples = samples_of(PAGE)
    level = {"name": "plant_tank_level_meters", "labels": {}}
    assert find_sample(samples, level)[1] == 0.064  # exposed with an extra label: its value is judged
    vib = {"name": "plant_sensor_vibration_mm_per_second", "labels": {"node": "vib-02"}}
    assert find_sample(samples, vib)[1] == 2.5
    ambiguous = {"name": "plant_sensor_vibration_mm_per_second", "labels": {}}
    assert find_sample(samples, ambiguous) is None  # two candidates: not guessed
    assert find_sample(samples, {"name": "plant_missing", "labels": {}}) is None
