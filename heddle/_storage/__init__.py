"""Object storage: content-addressed blobs over obstore."""

from heddle._storage.blobs import BlobStore, blob_key, default_storage_url

__all__ = ["BlobStore", "blob_key", "default_storage_url"]
