"""Object storage: content-addressed blobs over obstore."""

from heddle._storage.blobs import BlobStore, blob_key
from heddle._storage.io import BlobWriter, VerifyingReader

__all__ = ["BlobStore", "BlobWriter", "VerifyingReader", "blob_key"]
