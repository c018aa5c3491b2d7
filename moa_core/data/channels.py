"""The Cell Painting channels and the channel numbering of each gallery layout (no dependencies)."""

from __future__ import annotations

#: The five Cell Painting channels, in the order every array in this project uses.
CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")

#: Channel number -> stain, per gallery layout (the ``-chN`` of Phenix file names):
#: cpg0000/source_4 and LINCS (cpg0004) number them differently; cpg0016 load_data
#: files name each channel's file by stain (``FileName_Orig<Stain>``).
CHANNEL_MAPS: dict[str, dict[int, str]] = {
    "cpg0000": {1: "Mito", 2: "AGP", 3: "RNA", 4: "ER", 5: "DNA"},
    "cpg0004": {1: "DNA", 2: "ER", 3: "RNA", 4: "AGP", 5: "Mito"},
}
