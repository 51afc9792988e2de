"""The identify CLI's plain-text lines (core.identify.predict.format_result): one line per file, whatever its name."""

from pathlib import Path

import numpy as np
import pytest

from core.audio.decode import SAMPLE_RATE, write_wav
from core.identify.predict import DEFAULT_CHECKPOINT, format_result, identify_files, load_identifier



def test_a_file_name_holding_a_newline_stays_on_one_quoted_line(tmp_path):
    quiet = tmp_path / "two\nlines.wav"
    write_wav(quiet, np.zeros(SAMPLE_RATE, np.float32))
    missing = tmp_path / "gone\tand\nmissing.wav"
    plain = tmp_path / "plain name é.wav"
    write_wav(plain, np.zeros(SAMPLE_RATE, np.float32))
    lines = [format_result(r) for r in identify_files([str(quiet), str(missing), str(plain)], load_identifier())]
    assert all("\n" not in line and "\t" not in line for line in lines), lines
    assert lines[0] == f'"{tmp_path}/two\\nlines.wav": no speech found'
    assert lines[1].startswith(f'"{tmp_path}/gone\\tand\\nmissing.wav": error: ') and "no such file" in lines[1]
    assert lines[2] == f"{Path(plain)}: no speech found"  # printable names, accents included, are left as they are
