"""A tenant's in-memory vector index: numpy, simsimd and the standard library only (no Django).

Exact filtered top-k over float32 rows, an int8 copy for large tenants, rows spilled to a file
once that copy exists, and the index's array form that checkpoints store.
"""
