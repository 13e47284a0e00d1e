"""Brief euclidm: CPU s of grid.py alone on a distance rule over a Morton grid — the keys of every
row (grid_row_keys, in batches of 2^15 rows as the callers ask) and the degrees (grid_degrees).

    PYTHONPATH=TREE python benchmarks/euclidm_grid_keys.py [N] [BODY]"""
import sys
import time

import numpy as np

import patterndsl
from patterndsl import grid as G

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
body = sys.argv[2] if len(sys.argv) > 2 else "euclid(2)"
pattern = patterndsl.compile(f"let s = isqrt(n)\ngrid(s, s, order=morton) {{ {body} }}\n", n).patterns[0][0]
t = time.process_time()
keys = sum(G.grid_row_keys(pattern, np.arange(s, min(n, s + (1 << 15))), n).degrees().sum() for s in range(0, n, 1 << 15))
t1 = time.process_time()
degrees = G.grid_degrees(pattern, n)
t2 = time.process_time()
print(f"{body} n={n}: keys {keys:,} in {t1 - t:.1f} CPU s; degrees (sum {int(degrees.sum()):,}) in {t2 - t1:.1f} CPU s")
