"""``edge-export build``: train -> export -> bench as resumable stages, then a report and a recommendation."""
