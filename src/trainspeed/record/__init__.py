"""The run record: summary.json, environment facts, atomic writes."""
