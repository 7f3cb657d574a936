"""Postcard v1, as docs/wire-format.md §0 uses it: varints, zigzag, strings, options.

The writer makes canonical bytes; the reader is strict about lengths and bools, and a
caller checks canonical form the way the document says: re-encode what was decoded and
compare.
"""

import re

ID_RE = re.compile(r"[a-z0-9][a-z0-9_.\-]*")


class DecodeError(ValueError):
    """Bytes that are not a postcard encoding of the expected shape."""


class Writer:
    def __init__(self):
        self.out = bytearray()

    def varint(self, n):
        if n < 0:
            raise ValueError("varint of a negative number")
        while True:
            byte = n & 0x7F
            n >>= 7
            if n:
                self.out.append(byte | 0x80)
            else:
                self.out.append(byte)
                return self

    def zigzag(self, n):
        return self.varint((n << 1) ^ (n >> 63))

    def u8(self, n):
        self.out.append(n)
        return self

    def boolean(self, b):
        return self.u8(1 if b else 0)

    def raw(self, b):
        self.out += bytes(b)
        return self

    def bytes_(self, b):
        self.varint(len(b))
        return self.raw(b)

    def string(self, s):
        return self.bytes_(s.encode("utf-8"))

    def ident(self, s):
        if not (1 <= len(s) <= 64 and ID_RE.fullmatch(s)):
            raise ValueError(f"not an id: {s!r}")
        return self.string(s)

    def fixint_le(self, n, width, signed=False):
        return self.raw(n.to_bytes(width, "little", signed=signed))

    def option(self, value, write):
        if value is None:
            return self.u8(0)
        self.u8(1)
        write(value)
        return self

    def id_set(self, ids):
        """A set of ids: sorted by their bytes, no duplicates."""
        ids = sorted(set(ids), key=lambda s: s.encode())
        self.varint(len(ids))
        for i in ids:
            self.ident(i)
        return self

    def bytes(self):
        return bytes(self.out)


class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError("unexpected end of input")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def varint(self, max_bits=64):
        n, shift = 0, 0
        while True:
            b = self.u8()
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift >= max_bits + 7:
                raise DecodeError("varint too long")
        if n >> max_bits:
            raise DecodeError("varint out of range")
        return n

    def zigzag(self):
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def boolean(self):
        b = self.u8()
        if b > 1:
            raise DecodeError("bool byte other than 0 or 1")
        return b == 1

    def bytes_(self):
        return self.take(self.varint())

    def string(self):
        try:
            return self.bytes_().decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("string is not UTF-8") from e

    def ident(self):
        s = self.string()
        if not (1 <= len(s) <= 64 and ID_RE.fullmatch(s)):
            raise DecodeError(f"not an id: {s!r}")
        return s

    def fixint_le(self, width, signed=False):
        return int.from_bytes(self.take(width), "little", signed=signed)

    def option(self, read):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read()
        raise DecodeError("option tag other than 0 or 1")

    def id_list(self):
        n = self.varint()
        if n > len(self.data) - self.pos:
            raise DecodeError("count larger than the bytes left")
        return [self.ident() for _ in range(n)]

    def rest(self):
        return len(self.data) - self.pos
