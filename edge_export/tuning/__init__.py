"""``edge-export tune``: search backbones x input sizes x fine-tune depths x precisions for the fastest model
that meets the user's constraints on their device.

space.py (the candidates), latency.py (the device latency table, random-weight models), search.py (pruning,
cheap heads first, successive halving, resume), output.py (tune.json, table, Pareto plot, chosen config).
"""
