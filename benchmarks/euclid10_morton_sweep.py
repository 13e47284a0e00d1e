"""The hostile sweep's matrix (scripts/hostile_sweep.py) with distance and neighbourhood rules
on Morton grids besides its own grid2d-euclid-morton (brief euclid10), against any tree:

    cd TREE && python /path/to/benchmarks/euclid10_morton_sweep.py --groups matrix \\
        --patterns grid2d-euclid-morton,manhattan3-morton,natten7-morton,euclid40-morton \\
        --jobs 1 --limit 60 --sample 0 --n 1048576

TREE's own scripts/hostile_sweep.py runs TREE's CLI (each command judged by its own CPU)."""
import os
import sys

sys.path.insert(0, os.path.join(os.getcwd(), "scripts"))
import hostile_sweep as H  # noqa: E402

H.PATTERNS.update({
    "euclid40-morton": "let s = isqrt(n)\ngrid(s, s, order=morton) { euclid(40) }\n",
    "manhattan3-morton": "let s = isqrt(n)\ngrid(s, s, order=morton) { manhattan(3) }\n",
    "manhattan30-morton": "let s = isqrt(n)\ngrid(s, s, order=morton) { manhattan(30) }\n",
    "natten7-morton": "let s = isqrt(n)\ngrid(s, s, order=morton) { natten(7, 7) }\n",
    "euclid2c-morton": "let s = isqrt(n)\ngrid(s, s, order=morton) { euclid(2) & causal }\n",
})
sys.exit(H.main())
