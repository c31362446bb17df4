"""Is a PNG more than a blank page? Counts its distinct colours and the share of its most common
one, with the standard library only (8-bit RGB / RGBA / grey, non-interlaced: what Chromium and
satlas write).

    python3 scripts/png_colours.py FILE.png MIN_COLOURS

Prints the size, the number of colours and the background share; exit status 1 when there are
fewer than MIN_COLOURS colours or one colour covers more than 99.5 % of the pixels.
"""

import struct
import sys
import zlib
from collections import Counter

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path} is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace:
        sys.exit(f"{path}: only 8-bit non-interlaced PNGs are read here")
    bpp = CHANNELS[colour]
    raw = zlib.decompress(idat)
    stride = width * bpp
    previous = bytearray(stride)
    rows = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, bpp, rows


def main():
    path, minimum = sys.argv[1], int(sys.argv[2])
    width, height, bpp, rows = pixels(path)
    counts = Counter()
    for line in rows:
        for x in range(0, len(line), bpp):
            counts[line[x:x + bpp]] += 1
    top_share = counts.most_common(1)[0][1] / (width * height)
    print(f"{path}: {width}x{height}, {len(counts)} colours, most common {100 * top_share:.1f} %")
    if len(counts) < minimum or top_share > 0.995:
        sys.exit(1)


if __name__ == "__main__":
    main()
