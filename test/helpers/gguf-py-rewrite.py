"""Rewrite a GGUF through llama.cpp's own writer (gguf-py's GGUFWriter) and write it to a new path.

Used to prove that src/testing/random-gguf.ts lays files out byte for byte as llama.cpp's converter
(which writes through GGUFWriter) would: same key order and types, same tensor table, same alignment
and padding. Run with a Python that has numpy and gguf-py on its path:

    PYTHONPATH=<llama.cpp>/gguf-py /usr/bin/python3 test/helpers/gguf-py-rewrite.py in.gguf out.gguf
"""
import sys

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType

src, dst = sys.argv[1], sys.argv[2]
r = GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = GGUFWriter(dst, arch)  # writes general.architecture first, as the converter does
for name, field in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    vtype = field.types[0]
    if vtype == GGUFValueType.ARRAY:
        w.add_key_value(name, field.contents(), vtype, sub_type=field.types[1])
    else:
        w.add_key_value(name, field.contents(), vtype)
for t in r.tensors:
    # ggml order in the file is reversed numpy order; raw_shape keeps the file's element type.
    data = np.array(t.data)
    w.add_tensor(t.name, data, raw_shape=list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
