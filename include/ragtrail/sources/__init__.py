"""Reading sources: listing folders and buckets, walking safely, parsing formats in a sandbox, digests."""
